//! Run identifiers, and the shared-string id type the crate's ids are made with.

/// Declares an id newtype over a shared string (`Arc<str>`): cheap to clone, compared,
/// hashed and borrowed as its text, serialized as a plain string.
macro_rules! shared_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(::std::sync::Arc<str>);

        impl $name {
            /// Creates an id; any text is allowed.
            pub fn new(id: impl AsRef<str>) -> Self {
                Self(::std::sync::Arc::from(id.as_ref()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl ::std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self::new(id)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(::std::sync::Arc::from(id))
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }
    };
}

pub(crate) use shared_id;

shared_id! {
    /// The id of one run of a workflow. Cheap to clone (shared string).
    ///
    /// ```
    /// # use tradeflow::run::RunId;
    /// let id = RunId::from("run-1");
    /// assert_eq!(id, "run-1");
    /// assert_eq!(serde_json::to_string(&id).unwrap(), "\"run-1\"");
    /// ```
    RunId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_print_and_parse_as_text() {
        assert_eq!(format!("{:?}", RunId::from("r1")), "\"r1\"");
        assert_eq!(RunId::from(String::from("r1")).to_string(), "r1");
        let parsed: RunId = serde_json::from_str("\"r2\"").unwrap();
        assert_eq!(parsed, "r2");
    }
}
