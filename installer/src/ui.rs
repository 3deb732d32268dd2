//! The terminal side of a command: progress on stderr (nothing in `--output json` mode but the
//! answer), the change summary, and confirmations.

use std::io::IsTerminal as _;

use anyhow::Result;

use crate::stack::Change;

/// Prints progress on stderr.
#[derive(Clone, Copy, Debug)]
pub struct Ui {
    /// Quiet (JSON output): progress lines still go to stderr, bars only on a terminal.
    pub json: bool,
}

impl Ui {
    /// A progress line.
    pub fn say(&self, line: impl AsRef<str>) {
        eprintln!("{}", line.as_ref());
    }
}

/// The change set as lines for a person.
pub fn describe_changes(changes: &[Change]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if changes.is_empty() {
        s.push_str("  (no resource changes)\n");
    }
    for c in changes {
        let sign = match c.action.as_str() {
            "Add" => "+",
            "Remove" => "-",
            _ => "~",
        };
        let replace = match c.replacement.as_deref() {
            Some("True") => "  (REPLACED)",
            Some("Conditional") => "  (may be replaced)",
            _ => "",
        };
        let _ = writeln!(
            s,
            "  {sign} {:<8} {:<28} {}{replace}",
            c.action, c.logical_id, c.resource_type
        );
    }
    s
}

/// Asks the admin `question` at the terminal, unless `yes`; anything but yes stops with
/// `declined` (which says what did not happen).
pub fn confirm(question: &str, yes: bool, declined: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        crate::refuse!(
            NeedsConfirmation,
            "{question} needs a yes: run it in a terminal to confirm, or pass --yes"
        );
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        crate::refuse!(Declined, "{declined}")
    }
}

/// Refuses a non-interactive run without `--yes` before anything happens.
pub fn require_yes_or_terminal(command: &str, yes: bool) -> Result<()> {
    if !yes && !std::io::stdin().is_terminal() {
        crate::refuse!(
            NeedsConfirmation,
            "`installer {command}` asks for confirmation and this run is not interactive: pass --yes to proceed without asking"
        );
    }
    Ok(())
}
