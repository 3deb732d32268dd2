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
    let eol = line_ending(text.as_bytes())?;
    let Some(rest) = text.strip_prefix(BEGIN) else {
        return Err(armor_error(format!("the first line must be {BEGIN}")));
    };
    let Some(mut rest) = rest.strip_prefix(eol) else {
        return Err(armor_error(format!(
            "the {BEGIN} line must end with a line break"
        )));
    };
    if !rest.contains(END) {
        return Err(armor_error(format!(
            "the {END} line is missing (the file may be truncated)"
        )));
    }
    let crlf = eol == "\r\n";
    let mut compact = String::with_capacity(rest.len());
    let mut line_no = 1;
    let mut previous_len = LINE_WIDTH;
    loop {
        line_no += 1;
        // Splitting on a char uses memchr; a line ending is validated as a whole above.
        let (line, next) = match rest.split_once('\n') {
            Some((line, next)) => (
                if crlf { &line[..line.len() - 1] } else { line },
                Some(next),
            ),
            None => (rest, None),
        };
        if line.starts_with(END) {
            if line.len() > END.len() || next.is_some_and(|n| !n.is_empty()) {
                return Err(armor_error(format!("there is text after the {END} line")));
            }
            break;
        }
        if line.is_empty() {
            if line_no == 2 && next.is_some_and(|n| n.starts_with(END)) {
                return Err(armor_error(
                    "there is nothing between the BEGIN and END lines",
                ));
            }
            return Err(armor_error(format!("body line {line_no} is blank")));
        }
        if previous_len != LINE_WIDTH {
            return Err(armor_error(format!(
                "body line {} is {previous_len} characters; lines are {LINE_WIDTH} except the last",
                line_no - 1
            )));
        }
        if let Some(bad) = line
            .bytes()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')))
        {
            if line.contains(END) {
                return Err(armor_error(format!(
                    "the {END} line must start on a line of its own"
                )));
            }
            return Err(armor_error(format!(
                "body line {line_no} contains {:?}, which is not part of a license",
                char::from(bad)
            )));
        }
        if line.len() > LINE_WIDTH {
            return Err(armor_error(format!(
                "body line {line_no} is {} characters; lines are {LINE_WIDTH} except the last",
                line.len()
            )));
        }
        compact.push_str(line);
        previous_len = line.len();
        match next {
            Some(next) => rest = next,
            None => {
                return Err(armor_error(format!(
                    "the {END} line is missing (the file may be truncated)"
                )));
            }
        }
    }
    if compact.is_empty() {
        return Err(armor_error(
            "there is nothing between the BEGIN and END lines",
        ));
    }
    Ok(compact)
}

/// `"\n"`, or `"\r\n"` when every line break is CRLF; anything else is refused.
fn line_ending(bytes: &[u8]) -> Result<&'static str> {
    if !bytes.contains(&b'\r') {
        return Ok("\n");
    }
    let (mut cr, mut lf, mut crlf) = (0usize, 0usize, 0usize);
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'\r' => {
                cr += 1;
                if bytes.get(i + 1) == Some(&b'\n') {
                    crlf += 1;
                }
            }
            b'\n' => lf += 1,
            _ => {}
        }
    }
    if cr != crlf {
        return Err(armor_error(
            "it has a bare carriage return (or mixes CRLF and LF line endings)",
        ));
    }
    if lf != crlf {
        return Err(armor_error("it mixes CRLF and LF line endings"));
    }
    Ok("\r\n")
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
