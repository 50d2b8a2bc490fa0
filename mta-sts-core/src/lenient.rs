//! A list read leniently from a stored document (the policy cache's snapshot, the TLSRPT
//! aggregate and outbox): an entry of the wrong shape does not refuse the document, it is left
//! out and its position kept, so that the loader can skip it, count it and load the rest.

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

/// The entries of a stored list that have the right shape, and the positions of those that do
/// not, in document order.
#[derive(Debug)]
pub(crate) struct Lenient<T> {
    /// The well-formed entries.
    pub(crate) items: Vec<T>,
    /// The positions in the document of the entries that could not be read.
    pub(crate) malformed: Vec<usize>,
}

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            malformed: Vec::new(),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// An entry as read: a well-formed one, or anything else (left out, counted).
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Slot<T> {
            Entry(T),
            Malformed(IgnoredAny),
        }
        let slots = Vec::<Slot<T>>::deserialize(deserializer)?;
        let mut list = Self {
            items: Vec::with_capacity(slots.len()),
            malformed: Vec::new(),
        };
        for (position, slot) in slots.into_iter().enumerate() {
            match slot {
                Slot::Entry(e) => list.items.push(e),
                Slot::Malformed(_) => list.malformed.push(position),
            }
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_shapes_are_left_out_with_their_positions() {
        let list: Lenient<u32> = serde_json::from_str(r#"[1, "two", 3, {}, 5]"#).unwrap();
        assert_eq!(list.items, [1, 3, 5]);
        assert_eq!(list.malformed, [1, 3]);
        assert!(serde_json::from_str::<Lenient<u32>>("{}").is_err());
    }
}
