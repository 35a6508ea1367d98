//! Personal data that must never reach a log line, a span or a metric label.
//!
//! A lead's name, email, phone and the words they wrote are held in [`Pii`]: it behaves like
//! the value it wraps (deref, comparisons, serde, storage) but its `Debug` prints
//! `[redacted]` and it has no `Display`, so `?lead` in a `tracing` macro, an error's `{:?}`
//! or a panic message cannot leak it. Reading the value is explicit: [`Pii::expose`] or a
//! deref at the place that needs it (validation, storage, the gRPC response).

use std::borrow::Borrow;
use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Serialize};

/// A value that is personal data. See the module docs.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pii<T = String>(T);

impl<T> Pii<T> {
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// The personal data itself. Call it where the value is needed, never to log it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> Deref for Pii<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Pii<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl From<String> for Pii {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Pii {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl From<Pii> for String {
    fn from(value: Pii) -> Self {
        value.0
    }
}

impl Borrow<str> for Pii {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Pii {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Pii {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Pii {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for Pii {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

// Stored like the text it is: a column holding personal data is still a text column (erasure,
// not the type system, is what removes it from the database).
impl<DB: sqlx::Database> sqlx::Type<DB> for Pii
where
    String: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for Pii
where
    String: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        self.0.encode_by_ref(buf)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for Pii
where
    String: sqlx::Decode<'r, DB>,
{
    fn decode(
        value: <DB as sqlx::Database>::ValueRef<'r>,
    ) -> Result<Self, sqlx::error::BoxDynError> {
        String::decode(value).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[allow(dead_code)]
    struct Contact {
        email: Pii,
        company: String,
    }

    #[test]
    fn debug_output_never_holds_the_value() {
        let contact = Contact {
            email: "canary-7f3a@example.com".into(),
            company: "Acme".into(),
        };
        let printed = format!("{contact:?} {contact:#?}");
        assert!(!printed.contains("canary-7f3a"), "{printed}");
        assert!(printed.contains("[redacted]") && printed.contains("Acme"));
    }

    #[test]
    fn behaves_like_the_value_it_wraps() {
        let mut email = Pii::from("  Ada@Example.com ");
        *email = email.trim().to_lowercase();
        assert_eq!(email, "ada@example.com");
        assert_eq!(email.len(), 15);
        #[derive(Serialize, Deserialize)]
        struct Row {
            email: Pii,
        }
        let text = toml::to_string(&Row { email }).expect("serialise");
        assert_eq!(text.trim(), "email = \"ada@example.com\"");
        let back: Row = toml::from_str(&text).expect("deserialise");
        assert_eq!(back.email, "ada@example.com");
    }
}
