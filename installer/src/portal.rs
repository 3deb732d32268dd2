//! What the installer asks a vendor's portal: the vendor's keyset, the app's first TUF root, a
//! key grant for one release, and sealed objects. Everything it gets back is verified by the
//! caller (keyset against the pinned root, metadata through TUF, objects against the signed
//! manifest); the portal is trusted for nothing but availability.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bundles::KeysFile;
use bundles::manifest::ManifestSignature;
use bundles::wrap::RecipientSecret;
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt as _;

/// Largest keyset or root accepted from a portal.
const MAX_SMALL: usize = 512 * 1024;

/// A refusal by the portal: its stable code and sentence.
#[derive(Debug, thiserror::Error)]
#[error("the portal refused: {detail}")]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// The problem code (`revoked`, `wrong_account`, ...).
    pub code: String,
    /// What was wrong and what to do.
    pub detail: String,
}

/// What a grant gives: the release's data keys and its manifest's signature, both still to be
/// checked by the caller (the keys against the manifest, the signature against the keyset).
pub struct Granted {
    /// The release's keys file.
    pub keys: KeysFile,
    /// The manifest's signature by the vendor's release key, as the portal has it.
    pub signature: ManifestSignature,
}

/// A portal client.
#[derive(Clone, Debug)]
pub struct Portal {
    base: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Problem {
    code: Option<String>,
    detail: Option<String>,
}

impl Portal {
    /// A client for the portal at `base`.
    pub fn new(base: &str) -> Result<Self> {
        let url = url::Url::parse(base)
            .map_err(|e| anyhow!("{base} is not a URL ({e}): give the portal's address"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("{base} is not an http(s) URL");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("consign-installer/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The portal's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        anyhow!(
            "cannot reach the portal at {} ({e}): check the address and your network",
            self.base
        )
    }

    async fn refusal(response: reqwest::Response) -> anyhow::Error {
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let problem: Option<Problem> = serde_json::from_str(&text).ok();
        let (code, detail) = problem.map(|p| (p.code, p.detail)).unwrap_or((None, None));
        anyhow::Error::new(Refusal {
            status,
            code: code.unwrap_or_else(|| "error".into()),
            detail: detail.unwrap_or_else(|| format!("it answered HTTP {status}")),
        })
    }

    /// POSTs `body` to `path`; a non-2xx answer is a [`Refusal`].
    async fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<reqwest::Response> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            return Err(Self::refusal(response).await);
        }
        Ok(response)
    }

    async fn get_small(&self, path: &str) -> Result<Vec<u8>> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            return Err(Self::refusal(response).await);
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.unreachable(e))?;
            if body.len() + chunk.len() > MAX_SMALL {
                bail!("{path} on the portal is larger than {MAX_SMALL} bytes: refusing it");
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The vendor's support key (X25519, base64) that support bundles are sealed to.
    pub async fn support_key(&self, vendor: &str) -> Result<[u8; 32]> {
        let body = self
            .get_small(&format!("/api/v1/vendors/{vendor}/support-key"))
            .await
            .map_err(|e| match e.downcast_ref::<Refusal>() {
                Some(r) if r.status == 404 => anyhow!(
                    "{vendor} has no support key on the portal yet: ask the vendor to run `vendor-portal support keygen` and `support register`, or send the bundle file by other means"
                ),
                _ => e,
            })?;
        let answer: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| anyhow!("the portal's support key is not JSON ({e})"))?;
        let key = answer["public_key"]
            .as_str()
            .and_then(|k| STANDARD.decode(k).ok())
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or_else(|| anyhow!("the portal's support key is not a 32-byte X25519 key"))?;
        Ok(key)
    }

    /// Uploads a sealed support bundle; the id the portal stored it under.
    pub async fn upload_support(&self, body: &serde_json::Value) -> Result<String> {
        let response = self.post_json("/api/v1/support/bundles", body).await?;
        let answer: serde_json::Value = response
            .json()
            .await
            .map_err(|e| anyhow!("the portal's answer is not JSON ({e})"))?;
        Ok(answer["id"].as_str().unwrap_or_default().to_owned())
    }

    /// The vendor's signed keyset (verified by the caller against the pinned root).
    pub async fn keyset(&self, vendor: &str) -> Result<Vec<u8>> {
        self.get_small(&format!("/api/v1/vendors/{vendor}/keyset"))
            .await
            .with_context(|| format!("cannot fetch vendor {vendor}'s keyset"))
    }

    /// Version `version` of the app's root metadata (checked by the caller against the pinned
    /// root key).
    pub async fn root(&self, vendor: &str, app: &str, version: u64) -> Result<Vec<u8>> {
        self.get_small(&format!("/tuf/{vendor}/{app}/{version}.root.json"))
            .await
            .with_context(|| format!("cannot fetch {app}'s release metadata ({version}.root.json)"))
    }

    /// The app's TUF folder.
    pub fn tuf_base(&self, vendor: &str, app: &str) -> String {
        format!("{}/tuf/{vendor}/{app}/", self.base)
    }

    /// Asks for `version`'s data keys for `license`, deploying into `account`; unwraps them
    /// with a fresh key used for this grant only. The manifest's signature comes with them.
    pub async fn grant(
        &self,
        license: &str,
        app: &str,
        version: &str,
        account: &str,
        proof: Option<license::proof::AccountProof>,
    ) -> Result<Granted> {
        let secret = RecipientSecret::generate()?;
        let mut body = json!({
            "license": license,
            "app": app,
            "version": version,
            "public_key": STANDARD.encode(secret.public()),
            "aws_account": account,
        });
        if let Some(proof) = proof {
            body["account_proof"] = json!(proof);
        }
        let response = self.post_json("/api/v1/grants", &body).await?;
        #[derive(Deserialize)]
        struct Signature {
            kid: String,
            signature: String,
        }
        #[derive(Deserialize)]
        struct Grant {
            wrapped_keys: String,
            manifest_signature: Option<Signature>,
        }
        let grant: Grant = response
            .json()
            .await
            .map_err(|e| anyhow!("the portal's grant is not valid: {e}"))?;
        let wrapped = STANDARD
            .decode(grant.wrapped_keys.trim())
            .map_err(|_| anyhow!("the portal's grant is not base64"))?;
        let bytes = bundles::wrap::unwrap(&wrapped, &secret)?;
        let keys = KeysFile::parse(&bytes)?;
        let signature = grant.manifest_signature.ok_or_else(|| {
            anyhow!("the portal's grant carries no manifest signature: the portal is older than this installer, or not honest; ask the vendor")
        })?;
        let raw: [u8; 64] = STANDARD
            .decode(signature.signature.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| anyhow!("the portal's manifest signature is not 64 bytes of base64"))?;
        Ok(Granted {
            keys,
            signature: ManifestSignature {
                kid: signature.kid,
                signature: raw,
            },
        })
    }

    /// A single-use nonce for an account proof (`POST /api/v1/proofs/nonce`); `None` from a
    /// portal older than account proofs (it answers 404), which takes none.
    pub async fn proof_nonce(&self) -> Result<Option<String>> {
        #[derive(Deserialize)]
        struct Nonce {
            nonce: String,
        }
        let response = match self.post_json("/api/v1/proofs/nonce", &json!({})).await {
            Ok(response) => response,
            Err(e) if e.downcast_ref::<Refusal>().is_some_and(|r| r.status == 404) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let nonce: Nonce = response
            .json()
            .await
            .map_err(|e| anyhow!("the portal's proof nonce is not valid: {e}"))?;
        if !license::proof::valid_nonce(&nonce.nonce) {
            bail!("the portal's proof nonce is not a nonce: check the portal address");
        }
        Ok(Some(nonce.nonce))
    }

    /// Proves to the portal the account `license` will be used in (`POST /api/v1/proofs`);
    /// returns the proven account and ARN.
    pub async fn prove(
        &self,
        license: &str,
        proof: license::proof::AccountProof,
    ) -> Result<license::proof::Identity> {
        #[derive(Deserialize)]
        struct Answer {
            proven: license::proof::Identity,
        }
        let response = self
            .post_json(
                "/api/v1/proofs",
                &json!({"license": license, "proof": proof}),
            )
            .await?;
        let answer: Answer = response
            .json()
            .await
            .map_err(|e| anyhow!("the portal's answer to the account proof is not valid: {e}"))?;
        Ok(answer.proven)
    }

    /// Registers an installation (`POST /api/v1/installations`, the activation an agent makes);
    /// the portal answers with the installation and the license's signed status.
    pub async fn activate(
        &self,
        signed: &license::checkin::Signed,
    ) -> Result<license::checkin::ActivationAnswer> {
        let body = serde_json::to_value(signed)?;
        let response = self.post_json("/api/v1/installations", &body).await?;
        response
            .json()
            .await
            .map_err(|e| anyhow!("the portal's answer to the activation is not valid: {e}"))
    }

    /// Frees the seat `stack` in `account` and `region` holds on `license` (after an uninstall);
    /// returns the installation freed, if the portal had one.
    pub async fn free_seat(
        &self,
        license: &str,
        account: &str,
        region: &str,
        stack: &str,
    ) -> Result<Option<String>> {
        let response = self
            .post_json(
                "/api/v1/installations/remove",
                &json!({"license": license, "aws_account": account, "region": region, "stack": stack}),
            )
            .await?;
        #[derive(Deserialize)]
        struct Removed {
            installation: Option<String>,
        }
        let removed: Removed = response
            .json()
            .await
            .map_err(|e| anyhow!("the portal's answer is not valid: {e}"))?;
        Ok(removed.installation)
    }

    /// Downloads sealed object `sealed_digest` of `vendor` into `to`, at most `size` bytes,
    /// calling `progress` with each chunk's length.
    pub async fn download(
        &self,
        vendor: &str,
        license_compact: &str,
        sealed_digest: &str,
        size: u64,
        to: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<()> {
        let response = self
            .http
            .get(format!(
                "{}/api/v1/vendors/{vendor}/objects/{sealed_digest}",
                self.base
            ))
            .header("Authorization", format!("License {license_compact}"))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            return Err(Self::refusal(response).await);
        }
        let mut file = tokio::fs::File::create(to)
            .await
            .with_context(|| format!("cannot write {}", to.display()))?;
        let mut written = 0u64;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.unreachable(e))?;
            written += chunk.len() as u64;
            if written > size {
                crate::refuse!(
                    Tampered,
                    "object {sealed_digest} is larger than its signed size: refusing it"
                );
            }
            file.write_all(&chunk)
                .await
                .with_context(|| format!("cannot write {}", to.display()))?;
            progress(chunk.len() as u64);
        }
        file.flush().await?;
        Ok(())
    }
}
