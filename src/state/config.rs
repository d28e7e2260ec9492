//! `[state]` in `reflex.toml`: where dedup claims, cooldowns, rate buckets
//! and target leases live. As strict as the rest of the file: unknown keys
//! are errors, and every error has file, line and column. The environment
//! (`REFLEX_STATE_BACKEND`, `REFLEX_STATE_PATH`, `REFLEX_STATE_TABLE`)
//! overrides the file.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::rules::limits::parse_duration;
use crate::rules::source::{SourceError, SourceFile};

/// The default local state file, relative to the working directory.
pub const DEFAULT_PATH: &str = "reflex-state.redb";

/// The default claim and target lease.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// `[state]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// `"local"` (one embedded file, one reflex process), `"dynamodb"` (a
    /// table shared by any number of replicas) or `"memory"` (forgotten on
    /// exit; for tests). Default `"local"`.
    pub backend: Option<Spanned<String>>,
    /// The local state file. Default `"reflex-state.redb"`. Only one live
    /// reflex may hold it.
    pub path: Option<Spanned<PathBuf>>,
    /// The DynamoDB table (hash key `pk`, sort key `sk`, both strings; TTL
    /// on `expires_at`). Required with `backend = "dynamodb"`.
    pub table: Option<Spanned<String>>,
    /// How long a claim or target lease holds without a heartbeat: after a
    /// crash, another replica takes the work over once it runs out. Between
    /// 2s and 1h. Default `"60s"`.
    pub lease: Option<Spanned<String>>,
}

/// Values from the environment that override the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateOverrides {
    /// `REFLEX_STATE_BACKEND`.
    pub backend: Option<String>,
    /// `REFLEX_STATE_PATH`.
    pub path: Option<PathBuf>,
    /// `REFLEX_STATE_TABLE`.
    pub table: Option<String>,
}

impl StateOverrides {
    /// Reads `REFLEX_STATE_BACKEND`, `REFLEX_STATE_PATH` and
    /// `REFLEX_STATE_TABLE` (empty values count as unset).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        StateOverrides {
            backend: var("REFLEX_STATE_BACKEND"),
            path: var("REFLEX_STATE_PATH").map(PathBuf::from),
            table: var("REFLEX_STATE_TABLE"),
        }
    }
}

/// Which backend, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Local { path: PathBuf },
    DynamoDb { table: String },
}

/// The checked `[state]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    pub backend: Backend,
    pub lease: Duration,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: Backend::Local {
                path: PathBuf::from(DEFAULT_PATH),
            },
            lease: DEFAULT_LEASE,
        }
    }
}

impl StateConfig {
    /// The DynamoDB table, if that is the backend.
    pub fn dynamodb_table(&self) -> Option<&str> {
        match &self.backend {
            Backend::DynamoDb { table } => Some(table),
            _ => None,
        }
    }
}

impl StateSpec {
    /// Checks the section and applies overrides, adding every problem to
    /// `errors`.
    pub fn check(
        &self,
        file: &SourceFile,
        o: &StateOverrides,
        errors: &mut Vec<SourceError>,
    ) -> StateConfig {
        let lease = match &self.lease {
            None => DEFAULT_LEASE,
            Some(v) => match parse_duration(v.get_ref()) {
                Ok(d) if (Duration::from_secs(2)..=Duration::from_secs(3600)).contains(&d) => d,
                Ok(_) => {
                    errors.push(
                        file.error(Some(v.span()), "`state.lease` must be between 2s and 1h"),
                    );
                    DEFAULT_LEASE
                }
                Err(e) => {
                    errors.push(file.error(Some(v.span()), e));
                    DEFAULT_LEASE
                }
            },
        };
        let (name, span, from_env) = match (&o.backend, &self.backend) {
            (Some(b), _) => (b.as_str(), None, true),
            (None, Some(b)) => (b.get_ref().as_str(), Some(b.span()), false),
            (None, None) => ("local", None, false),
        };
        // A key for another backend is a mistake in the file, unless the
        // environment switched the backend under it.
        let misplaced = |errors: &mut Vec<SourceError>, key: &str, span| {
            if !from_env {
                errors.push(file.error(
                    Some(span),
                    format!("`state.{key}` is not used with `backend = \"{name}\"`"),
                ));
            }
        };
        let backend = match name {
            "memory" => {
                if let Some(p) = &self.path {
                    misplaced(errors, "path", p.span());
                }
                if let Some(t) = &self.table {
                    misplaced(errors, "table", t.span());
                }
                Backend::Memory
            }
            "local" => {
                if let Some(t) = &self.table {
                    misplaced(errors, "table", t.span());
                }
                let path = o
                    .path
                    .clone()
                    .or_else(|| self.path.as_ref().map(|p| p.get_ref().clone()))
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
                if path.as_os_str().is_empty() {
                    let span = self.path.as_ref().map(Spanned::span);
                    errors.push(file.error(span, "`state.path` is empty"));
                }
                Backend::Local { path }
            }
            "dynamodb" => {
                if let Some(p) = &self.path {
                    misplaced(errors, "path", p.span());
                }
                let table = o
                    .table
                    .clone()
                    .or_else(|| self.table.as_ref().map(|t| t.get_ref().clone()));
                match table {
                    Some(t) if valid_table_name(&t) => Backend::DynamoDb { table: t },
                    Some(t) => {
                        let span = self.table.as_ref().map(Spanned::span);
                        errors.push(file.error(
                            span,
                            format!("`state.table` {t:?} is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ - .)"),
                        ));
                        Backend::Memory
                    }
                    None => {
                        errors.push(file.error(
                            span,
                            "`backend = \"dynamodb\"` needs `state.table` (or REFLEX_STATE_TABLE)",
                        ));
                        Backend::Memory
                    }
                }
            }
            other => {
                let origin = if from_env {
                    " (from REFLEX_STATE_BACKEND)"
                } else {
                    ""
                };
                errors.push(file.error(
                    span,
                    format!("unknown `state.backend` {other:?}{origin}; expected \"local\", \"dynamodb\" or \"memory\""),
                ));
                Backend::Memory
            }
        };
        StateConfig { backend, lease }
    }
}

fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::source::parse_toml;
    use std::path::Path;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        state: StateSpec,
    }

    fn check(text: &str, o: StateOverrides) -> Result<StateConfig, Vec<String>> {
        let file = SourceFile::new(Path::new("reflex.toml"), text.to_string());
        let doc: Doc = parse_toml(&file).map_err(|e| vec![e.to_string()])?;
        let mut errors = Vec::new();
        let c = doc.state.check(&file, &o, &mut errors);
        if errors.is_empty() {
            Ok(c)
        } else {
            Err(errors.iter().map(ToString::to_string).collect())
        }
    }

    #[test]
    fn the_default_is_a_local_file() {
        let c = check("", StateOverrides::default()).unwrap();
        assert_eq!(c, StateConfig::default());
        assert_eq!(
            c.backend,
            Backend::Local {
                path: PathBuf::from("reflex-state.redb")
            }
        );
        assert_eq!(c.lease, Duration::from_secs(60));
    }

    #[test]
    fn each_backend_takes_its_own_keys() {
        let c = check(
            "[state]\nbackend = \"dynamodb\"\ntable = \"reflex-state\"\nlease = \"30s\"\n",
            StateOverrides::default(),
        )
        .unwrap();
        assert_eq!(c.dynamodb_table(), Some("reflex-state"));
        assert_eq!(c.lease, Duration::from_secs(30));
        let c = check(
            "[state]\npath = \"/var/lib/reflex/state.redb\"\n",
            StateOverrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.backend,
            Backend::Local {
                path: PathBuf::from("/var/lib/reflex/state.redb")
            }
        );
        assert_eq!(
            check("[state]\nbackend = \"memory\"\n", StateOverrides::default())
                .unwrap()
                .backend,
            Backend::Memory
        );
    }

    #[test]
    fn mistakes_are_located() {
        let e = check("[state]\nbakend = \"local\"\n", StateOverrides::default()).unwrap_err();
        assert!(
            e[0].starts_with("reflex.toml:2:1: unknown field `bakend`"),
            "{e:?}"
        );
        let e = check("[state]\nbackend = \"redis\"\n", StateOverrides::default()).unwrap_err();
        assert!(
            e[0].starts_with("reflex.toml:2:11: unknown `state.backend` \"redis\""),
            "{e:?}"
        );
        let e = check(
            "[state]\nbackend = \"dynamodb\"\n",
            StateOverrides::default(),
        )
        .unwrap_err();
        assert!(
            e[0].starts_with("reflex.toml:2:11:") && e[0].contains("needs `state.table`"),
            "{e:?}"
        );
        let e = check(
            "[state]\nbackend = \"local\"\ntable = \"t-1\"\nlease = \"1s\"\n",
            StateOverrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e.iter()
                .any(|e| e.starts_with("reflex.toml:3:9: `state.table` is not used")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.starts_with("reflex.toml:4:9: `state.lease` must be")),
            "{e:?}"
        );
        let e = check(
            "[state]\nbackend = \"dynamodb\"\ntable = \"no spaces\"\n",
            StateOverrides::default(),
        )
        .unwrap_err();
        assert!(e[0].starts_with("reflex.toml:3:9:"), "{e:?}");
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let env = StateOverrides {
            backend: Some("dynamodb".into()),
            path: None,
            table: Some("from-env".into()),
        };
        let c = check("[state]\npath = \"ignored.redb\"\n", env).unwrap();
        assert_eq!(c.dynamodb_table(), Some("from-env"));
        let env = StateOverrides {
            path: Some(PathBuf::from("/data/state.redb")),
            ..StateOverrides::default()
        };
        let c = check("[state]\npath = \"file.redb\"\n", env).unwrap();
        assert_eq!(
            c.backend,
            Backend::Local {
                path: PathBuf::from("/data/state.redb")
            }
        );
        let env = StateOverrides {
            backend: Some("etcd".into()),
            ..StateOverrides::default()
        };
        let e = check("", env).unwrap_err();
        assert!(e[0].contains("REFLEX_STATE_BACKEND"), "{e:?}");
    }
}
