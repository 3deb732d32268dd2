//! The admin's AWS account: clients from `aws-config`'s default chain (profiles, SSO,
//! environment, IMDS), the caller's identity from STS, and AWS errors turned into one sentence
//! that names the action and resource (and, for a denial, what to grant).

use anyhow::{Result, anyhow, bail};
use aws_config::BehaviorVersion;
use aws_sdk_cloudformation::error::{ProvideErrorMetadata, SdkError};

/// The HTTP response type every AWS SDK client shares.
pub type HttpResponse = aws_sdk_cloudformation::config::http::HttpResponse;

/// How to reach the account.
#[derive(Clone, Debug, Default)]
pub struct AwsOptions {
    /// An endpoint for every service (an emulator); `AWS_ENDPOINT_URL` works too.
    pub endpoint_url: Option<String>,
    /// A named profile.
    pub profile: Option<String>,
    /// The region (else the chain's: `AWS_REGION`, the profile).
    pub region: Option<String>,
    /// A deployment role for CloudFormation to act through.
    pub role_arn: Option<String>,
}

/// Clients for the services the installer uses, and who the caller is.
#[derive(Clone, Debug)]
pub struct Aws {
    /// CloudFormation.
    pub cfn: aws_sdk_cloudformation::Client,
    /// S3.
    pub s3: aws_sdk_s3::Client,
    /// SSM Parameter Store.
    pub ssm: aws_sdk_ssm::Client,
    /// IAM (the installation's permissions boundary).
    pub iam: aws_sdk_iam::Client,
    /// The account id (STS GetCallerIdentity).
    pub account: String,
    /// The caller's ARN.
    pub caller: String,
    /// The region.
    pub region: String,
    /// The custom endpoint, if any.
    pub endpoint: Option<String>,
    /// The deployment role CloudFormation acts through (`--role-arn`), if any.
    pub role_arn: Option<String>,
    /// The loaded configuration (credentials for account proofs).
    config: aws_config::SdkConfig,
}

impl Aws {
    /// Resolves credentials and region and asks STS who the caller is.
    pub async fn connect(options: &AwsOptions) -> Result<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &options.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &options.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(url) = &options.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let config = loader.load().await;
        let region = config
            .region()
            .map(ToString::to_string)
            .ok_or_else(|| anyhow!("no AWS region is set: pass --region or set AWS_REGION"))?;
        if config.credentials_provider().is_none() {
            bail!("no AWS credentials were found: configure a profile, SSO or AWS_* variables");
        }
        let endpoint = config.endpoint_url().map(str::to_owned);
        // With CONSIGN_AWS_CALL_LOG, every call is recorded (action and resource) for checking
        // `installer iam-policy` by use.
        let recorder = crate::calls::Recorder::from_env(&region)?;
        macro_rules! client {
            ($krate:ident, $builder:expr) => {{
                let mut builder = $builder;
                if let Some(r) = &recorder {
                    builder = builder.interceptor(r.clone());
                }
                $krate::Client::from_conf(builder.build())
            }};
        }
        let sts = client!(aws_sdk_sts, aws_sdk_sts::config::Builder::from(&config));
        let identity = sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| explain(e, "sts:GetCallerIdentity", "*", endpoint.as_deref()))?;
        let account = identity
            .account()
            .ok_or_else(|| anyhow!("STS did not say which account the credentials belong to"))?
            .to_owned();
        Ok(Self {
            cfn: client!(
                aws_sdk_cloudformation,
                aws_sdk_cloudformation::config::Builder::from(&config)
            ),
            s3: client!(
                aws_sdk_s3,
                aws_sdk_s3::config::Builder::from(&config)
                    // Emulators serve buckets under the path, not as subdomains.
                    .force_path_style(endpoint.is_some())
            ),
            ssm: client!(aws_sdk_ssm, aws_sdk_ssm::config::Builder::from(&config)),
            iam: client!(aws_sdk_iam, aws_sdk_iam::config::Builder::from(&config)),
            account,
            caller: identity.arn().unwrap_or_default().to_owned(),
            region,
            endpoint,
            role_arn: options.role_arn.clone(),
            config,
        })
    }

    /// A proof of this account for `portal`: a portal nonce in a signed header of an
    /// `sts:GetCallerIdentity` request signed with these credentials (the credentials stay here).
    /// `None` when the portal is older than account proofs.
    pub async fn prove(
        &self,
        portal: &crate::portal::Portal,
    ) -> Result<Option<license::proof::AccountProof>> {
        use aws_credential_types::provider::ProvideCredentials as _;
        let Some(nonce) = portal.proof_nonce().await? else {
            return Ok(None);
        };
        let provider = self.config.credentials_provider().ok_or_else(|| {
            anyhow!("no AWS credentials were found: configure a profile, SSO or AWS_* variables")
        })?;
        let credentials = provider.provide_credentials().await.map_err(|e| {
            anyhow!("cannot read your AWS credentials to prove the account to the portal ({e})")
        })?;
        let url = license::proof::endpoint_for(&self.region, self.endpoint.as_deref());
        Ok(Some(license::proof::sign(
            credentials,
            &self.region,
            &url,
            Some(&nonce),
            std::time::SystemTime::now(),
        )?))
    }

    /// The loaded AWS configuration, for clients of other services.
    pub fn sdk_config(&self) -> &aws_config::SdkConfig {
        &self.config
    }

    /// [`explain`] with this account's endpoint.
    pub fn explain<E>(
        &self,
        err: SdkError<E, HttpResponse>,
        action: &str,
        resource: &str,
    ) -> anyhow::Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        explain(err, action, resource, self.endpoint.as_deref())
    }
}

/// Error codes AWS uses for a missing permission.
pub(crate) const DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
    "InvalidClientTokenId",
];

/// How AWS words a denial in the message, whatever the error code.
const NOT_AUTHORIZED: &str = "is not authorized to perform";

/// An AWS error as one sentence naming `action` on `resource`.
pub fn explain<E>(
    err: SdkError<E, HttpResponse>,
    action: &str,
    resource: &str,
    endpoint: Option<&str>,
) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let place = endpoint.map_or_else(|| "AWS".to_owned(), |e| format!("AWS at {e}"));
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            let cause = source_text(&err);
            return anyhow!(
                "cannot reach {place} for {action} ({cause}): check your network and endpoint, then run the command again; it resumes where it stopped"
            );
        }
        SdkError::ServiceError(service) if service.err().message().is_some() => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown");
            let message = e.message().unwrap_or_default();
            if DENIED.contains(&code) || message.contains(NOT_AUTHORIZED) {
                return anyhow!(
                    "AWS denied {action} on {resource} ({code}: {message}): grant it to your role (`installer iam-policy --version V` prints everything the installer needs)"
                );
            }
            return anyhow!("{action} on {resource} failed: {code}: {message}");
        }
        _ => {}
    }
    // An answer the SDK could not parse (an emulator answering in another protocol): the
    // body's own message is the best description.
    if let Some(raw) = err.raw_response()
        && let Some(message) = body_message(raw.body().bytes().unwrap_or_default())
    {
        if message.contains(NOT_AUTHORIZED) {
            return anyhow!(
                "AWS denied {action} on {resource} ({message}): grant it to your role (`installer iam-policy --version V` prints everything the installer needs)"
            );
        }
        return anyhow!("{action} on {resource} failed: {message}");
    }
    anyhow!("{action} on {resource} failed: {}", source_text(&err))
}

/// The error's causes, innermost last, without repeats.
fn source_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}

/// The `message` of a JSON error body or the `<Message>` of an XML one.
pub fn body_message(body: &[u8]) -> Option<String> {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let message = value
            .get("message")
            .or_else(|| value.get("Message"))?
            .as_str()?;
        let kind = value.get("__type").and_then(|t| t.as_str());
        return Some(match kind {
            Some(kind) => format!("{kind}: {message}"),
            None => message.to_owned(),
        });
    }
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Message>")? + "<Message>".len();
    let end = text[start..].find("</Message>")? + start;
    Some(text[start..end].to_owned())
}

/// Whether `err` is the "stack does not exist" validation error (unmodelled in the SDK).
pub fn is_missing_stack<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            e.code() == Some("ValidationError")
                && e.message().is_some_and(|m| m.contains("does not exist"))
        }
        _ => false,
    }
}

/// Whether `err` says the thing asked about is not there (404-like).
pub fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(service) => {
            service.raw().status().as_u16() == 404
                || matches!(
                    service.err().code(),
                    Some("NotFound" | "NoSuchKey" | "NoSuchBucket" | "ParameterNotFound")
                )
        }
        _ => false,
    }
}
