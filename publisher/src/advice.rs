//! Errors that say what to do: a message and a `hint:` line, kept apart as
//! data (never parsed back out of text), so `report_error` prints the hint
//! however much context the error gathered on its way up.

/// A refusal with advice. Its `Display` is the message alone.
#[derive(Debug)]
pub struct Advice {
    pub message: String,
    pub hint: String,
}

impl std::fmt::Display for Advice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Advice {}

impl Advice {
    /// Split a `concat!(message, "\0", hint)` formatted by [`advise!`].
    #[doc(hidden)]
    pub fn from_joined(joined: &str) -> anyhow::Error {
        let (message, hint) = joined.split_once('\0').unwrap_or((joined, ""));
        anyhow::Error::new(Advice {
            message: message.to_string(),
            hint: hint.to_string(),
        })
    }
}

/// `advise!("message {}", "hint {}", a, b)`: an [`Advice`] error; the format
/// arguments fill the message's placeholders, then the hint's.
#[macro_export]
macro_rules! advise {
    ($msg:literal, $hint:literal $(, $arg:expr)* $(,)?) => {
        $crate::advice::Advice::from_joined(&format!(concat!($msg, "\0", $hint) $(, $arg)*))
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn message_and_hint_stay_apart_through_context() {
        let e = crate::advise!("{} is missing", "create it with {}", "x.db", "init")
            .context("publishing");
        let a = e
            .chain()
            .find_map(|c| c.downcast_ref::<super::Advice>())
            .unwrap();
        assert_eq!(a.message, "x.db is missing");
        assert_eq!(a.hint, "create it with init");
        assert!(!format!("{e:#}").contains("hint"));
    }
}
