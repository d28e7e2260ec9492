//! Where a problem is: file, line and column, from a byte span.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a rule or config file, located to the character.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceError {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for SourceError {}

/// A file's text, for turning byte offsets into lines and columns.
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    /// Byte offset of the start of each line, so that locating an offset is
    /// a binary search, not a scan (a file of 10,000 rules asks 10,000 times).
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: &Path, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            path: path.to_path_buf(),
            text,
            line_starts,
        }
    }

    /// 1-based line and column of a byte offset (clamped to the text).
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        // The last line starting at or before `offset`.
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    /// An error at a byte span (or at the start of the file).
    ///
    /// The message is kept to one line (the TOML parser's span several), so
    /// each problem is exactly one `file:line:col: message` line.
    pub fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> SourceError {
        let (line, column) = span.map_or((1, 1), |s| self.line_col(s.start));
        let message: String = message.into();
        let message = if message.contains('\n') {
            let parts: Vec<&str> = message
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            parts.join("; ")
        } else {
            message
        };
        SourceError {
            file: self.path.clone(),
            line,
            column,
            message,
        }
    }
}

/// Parses a whole TOML file into `T`, with located errors (config files).
pub fn parse_toml<T: serde::de::DeserializeOwned>(file: &SourceFile) -> Result<T, SourceError> {
    let doc: toml_edit::ImDocument<String> =
        file.text.parse().map_err(|e: toml_edit::TomlError| {
            file.error(e.span(), toml_message(file, e.span(), e.message()))
        })?;
    T::deserialize(toml_edit::de::Deserializer::from(doc))
        .map_err(|e| file.error(e.span(), toml_message(file, e.span(), e.message())))
}

/// The parser's message, or, where it has none (a control character such
/// as NUL in a comment), what is at the error's position.
pub fn toml_message(
    file: &SourceFile,
    span: Option<std::ops::Range<usize>>,
    message: &str,
) -> String {
    let message = message.trim();
    if !message.is_empty() {
        return message.to_string();
    }
    let found = span
        .and_then(|s| file.text.get(s.start..))
        .and_then(|rest| rest.chars().next());
    match found {
        Some(c) if c.is_control() => {
            format!(
                "invalid TOML: control character U+{:04X} is not allowed here",
                c as u32
            )
        }
        Some(c) => format!("invalid TOML: unexpected {c:?}"),
        None => "invalid TOML".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (`scripts/fuzz`, rules and config targets): a NUL
    /// in a comment made the parser fail with an empty message.
    #[test]
    fn a_control_character_in_a_comment_is_a_located_error_with_a_message() {
        #[derive(serde::Deserialize, Debug)]
        struct Any {}
        for (text, column, code) in [
            ("# when\0 more\nx = 1\n", 7, "U+0000"),
            ("x = 1\n# a\u{8}b\n", 4, "U+0008"),
        ] {
            let f = SourceFile::new(Path::new("x.toml"), text.to_string());
            let e = parse_toml::<Any>(&f).expect_err("a control character is not TOML");
            assert!(!e.message.trim().is_empty(), "{e}");
            assert!(e.message.contains(code), "{e}");
            assert_eq!(e.column, column, "{e}");
        }
    }

    #[test]
    fn line_and_column() {
        let f = SourceFile::new(Path::new("x.toml"), "ab\ncdé\nf".to_string());
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        assert_eq!(f.line_col(8), (3, 1));
        assert_eq!(f.line_col(5), (2, 3));
        assert_eq!(f.line_col(6), (2, 3), "inside a multi-byte character");
        assert_eq!(f.line_col(7), (2, 4), "the newline ends its line");
        assert_eq!(f.line_col(99), (3, 2), "clamped to the end");
        let empty = SourceFile::new(Path::new("e.toml"), String::new());
        assert_eq!(empty.line_col(0), (1, 1));
        assert_eq!(f.error(Some(4..5), "bad").to_string(), "x.toml:2:2: bad");
        assert_eq!(
            f.error(None, "invalid table header\nexpected `.`, `]]`\n")
                .to_string(),
            "x.toml:1:1: invalid table header; expected `.`, `]]`"
        );
    }
}
