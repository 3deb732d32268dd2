//! The armoured text form of a license: the compact JWS wrapped at 64 columns between BEGIN and
//! END lines, so it survives e-mail, tickets and copy-paste. The grammar is strict so that each
//! license has exactly one armoured form.

use crate::error::{Error, Result};

/// The first line of every armoured license.
pub const BEGIN: &str = "-----BEGIN CONSIGN LICENSE-----";
/// The last line of every armoured license.
pub const END: &str = "-----END CONSIGN LICENSE-----";
/// Body lines are this long, except the last.
pub const LINE_WIDTH: usize = 64;
/// The largest armoured license accepted, in bytes: real ones are 1–3 KiB.
pub const MAX_ARMORED_LEN: usize = 16 * 1024;

/// Wraps a compact JWS in armour, with LF line endings.
pub fn armor(compact: &str) -> String {
    let mut out = String::with_capacity(compact.len() + compact.len() / LINE_WIDTH + 80);
    out.push_str(BEGIN);
    out.push('\n');
    for line in compact.as_bytes().chunks(LINE_WIDTH) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(END);
    out.push('\n');
    out
}

fn armor_error(reason: impl Into<String>) -> Error {
    Error::Armor {
        reason: reason.into(),
    }
}

/// Unwraps an armoured license into its compact JWS.
///
/// Accepted: exactly the output of [`armor`], or the same with every line ending as CRLF (a file
/// that passed through a Windows editor is still the same license; the signature covers the JWS,
/// not the armour). Refused, each with its own reason: text before BEGIN or after END, a missing
/// END, mixed or bare-CR line endings, blank or over-long lines, characters outside the JWS
/// alphabet, and anything over [`MAX_ARMORED_LEN`].
pub fn dearmor(text: &str) -> Result<String> {
    if text.len() > MAX_ARMORED_LEN {
        return Err(Error::TooLarge {
            what: "license",
            size: text.len(),
            limit: MAX_ARMORED_LEN,
        });
    }
    if !text.is_ascii() {
        return Err(armor_error("it contains non-ASCII characters"));
    }
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let without_crlf = text.replace("\r\n", "");
    if without_crlf.contains('\r') {
        return Err(armor_error(
            "it has a bare carriage return (or mixes CRLF and LF line endings)",
        ));
    }
    if eol == "\r\n" && without_crlf.contains('\n') {
        return Err(armor_error("it mixes CRLF and LF line endings"));
    }
    let Some(rest) = text.strip_prefix(BEGIN) else {
        return Err(armor_error(format!("the first line must be {BEGIN}")));
    };
    let Some(rest) = rest.strip_prefix(eol) else {
        return Err(armor_error(format!(
            "the {BEGIN} line must end with a line break"
        )));
    };
    let end_at = rest.find(END).ok_or_else(|| {
        armor_error(format!(
            "the {END} line is missing (the file may be truncated)"
        ))
    })?;
    let (body, tail) = rest.split_at(end_at);
    let tail = &tail[END.len()..];
    if !(tail.is_empty() || tail == eol) {
        return Err(armor_error(format!("there is text after the {END} line")));
    }
    if body.is_empty() {
        return Err(armor_error(
            "there is nothing between the BEGIN and END lines",
        ));
    }
    let Some(body) = body.strip_suffix(eol) else {
        return Err(armor_error(format!(
            "the {END} line must start on a line of its own"
        )));
    };
    let lines: Vec<&str> = body.split(eol).collect();
    let mut compact = String::with_capacity(body.len());
    for (i, line) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        if line.is_empty() {
            return Err(armor_error(format!("body line {} is blank", i + 2)));
        }
        if line.len() > LINE_WIDTH || (!last && line.len() != LINE_WIDTH) {
            return Err(armor_error(format!(
                "body line {} is {} characters; lines are {LINE_WIDTH} except the last",
                i + 2,
                line.len()
            )));
        }
        if let Some(bad) = line
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(armor_error(format!(
                "body line {} contains {bad:?}, which is not part of a license",
                i + 2
            )));
        }
        compact.push_str(line);
    }
    Ok(compact)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWS: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl";

    #[test]
    fn round_trips_lf_and_crlf() {
        let text = armor(JWS);
        assert_eq!(dearmor(&text).unwrap(), JWS);
        assert_eq!(dearmor(&text.replace('\n', "\r\n")).unwrap(), JWS);
        assert_eq!(dearmor(text.trim_end()).unwrap(), JWS);
    }

    #[test]
    fn refuses_every_other_shape() {
        let text = armor(JWS);
        let cases = [
            (text.replacen('\n', "\r\n", 1), "mixes"),
            (text.replace('\n', "\r"), "bare carriage return"),
            (text.replace(END, ""), "missing"),
            (format!("hello\n{text}"), "first line"),
            (format!("{text}more"), "after the"),
            (format!("{text}\n"), "after the"),
            (
                text.replace(BEGIN, "-----BEGIN CONSIGN LICENCE-----"),
                "first line",
            ),
            (text.replacen(".", " ", 1), "contains ' '"),
            (text.replacen(".", "=", 1), "contains '='"),
            (armor(JWS).replacen('\n', "\n\n", 2), "blank"),
            (format!("{BEGIN}\n{JWS}\n{END}\n"), "characters"),
            (format!("{BEGIN}\n{END}\n"), "nothing between"),
            (text.replace("eyJzdWIi", "eyJzdWIé"), "non-ASCII"),
            ("x".repeat(MAX_ARMORED_LEN + 1), "over the"),
        ];
        for (bad, says) in cases {
            let err = dearmor(&bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }
}
