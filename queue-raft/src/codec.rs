//! The queue's one bincode configuration, for everything it encodes: Raft RPC payloads, the sled
//! log and meta values, snapshot files and snapshot data.
//!
//! The bytes are exactly those of `bincode::serialize` (fixed-width integers, trailing bytes
//! allowed), so data written before this module existed stays readable. What differs is
//! decoding: `bincode::deserialize` trusts length prefixes, and a peer's payload or a corrupt
//! file that claims a 2^60-byte string makes it try to allocate that much. Here every decode is
//! limited to the bytes actually there (the slice, or the file's length), so a length prefix
//! past the end is an error before anything is allocated.

use std::io::{Read, Write};

use bincode::Options;
use imbl::OrdMap;
use serde::de::{DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
}

/// The bincode of `value`, the same bytes `bincode::serialize` writes.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> bincode::Result<Vec<u8>> {
    options().serialize(value)
}

/// Writes the bincode of `value` to `writer`, the same bytes `bincode::serialize_into` writes.
pub fn encode_into<W: Write, T: Serialize + ?Sized>(writer: W, value: &T) -> bincode::Result<()> {
    options().serialize_into(writer, value)
}

/// Decodes a `T` from `bytes`, reading no more than `bytes.len()` bytes' worth of lengths.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> bincode::Result<T> {
    let limit = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    options().with_limit(limit).deserialize(bytes)
}

/// Decodes a `T` from `reader`, which holds `len` bytes (a file's length): a length prefix that
/// points past them is an error, not an allocation.
pub fn decode_from<R: Read, T: DeserializeOwned>(reader: R, len: u64) -> bincode::Result<T> {
    options().with_limit(len).deserialize_from(reader)
}

/// Deserializes an `OrdMap` entry by entry. imbl's own `Deserialize` reserves room for as many
/// entries as the encoding's length prefix claims, which a corrupt snapshot sets to anything;
/// this one grows only with the entries actually decoded. The encoding is the same (a map).
pub fn deserialize_ord_map<'de, D, K, V>(deserializer: D) -> Result<OrdMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Ord + Clone,
    V: Deserialize<'de> + Clone,
{
    struct OrdMapVisitor<K, V>(std::marker::PhantomData<(K, V)>);

    impl<'de, K, V> Visitor<'de> for OrdMapVisitor<K, V>
    where
        K: Deserialize<'de> + Ord + Clone,
        V: Deserialize<'de> + Clone,
    {
        type Value = OrdMap<K, V>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("a map")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
            let mut map = OrdMap::new();
            while let Some((key, value)) = access.next_entry()? {
                map.insert(key, value);
            }
            Ok(map)
        }
    }

    deserializer.deserialize_map(OrdMapVisitor(std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Old data stays readable: the bytes are bincode 1.3's defaults, both ways.
        #[test]
        fn encodes_as_bincode_serialize_does(
            values in proptest::collection::vec((any::<u64>(), ".{0,16}", any::<Option<u32>>()), 0..8)
        ) {
            let bytes = encode(&values).expect("encodes");
            prop_assert_eq!(&bytes, &bincode::serialize(&values).expect("encodes"));
            let mut written = Vec::new();
            encode_into(&mut written, &values).expect("encodes");
            prop_assert_eq!(&written, &bytes);
            let decoded: Vec<(u64, String, Option<u32>)> = decode(&bytes).expect("decodes");
            prop_assert_eq!(&decoded, &values);
            let read: Vec<(u64, String, Option<u32>)> =
                decode_from(bytes.as_slice(), bytes.len() as u64).expect("decodes");
            prop_assert_eq!(read, values);
        }
    }

    #[test]
    fn a_length_prefix_past_the_end_is_an_error_not_an_allocation() {
        let mut bytes = (1u64 << 60).to_le_bytes().to_vec();
        bytes.extend_from_slice(b"short");
        assert!(decode::<String>(&bytes).is_err());
        assert!(decode::<Vec<u8>>(&bytes).is_err());
        assert!(decode_from::<_, Vec<u8>>(bytes.as_slice(), bytes.len() as u64).is_err());
    }

    #[test]
    fn an_ord_map_with_a_huge_length_prefix_is_an_error_not_an_allocation() {
        #[derive(Debug, Deserialize)]
        struct Wrapper {
            #[serde(deserialize_with = "deserialize_ord_map")]
            _map: OrdMap<u64, String>,
        }
        let bytes = (1u64 << 60).to_le_bytes();
        assert!(decode::<Wrapper>(&bytes).is_err());
    }

    #[test]
    fn an_ord_map_decodes_from_imbl_s_own_encoding() {
        #[derive(Debug, Deserialize)]
        struct Wrapper {
            #[serde(deserialize_with = "deserialize_ord_map")]
            map: OrdMap<u64, String>,
        }
        let map: OrdMap<u64, String> = (0..10u64).map(|key| (key, key.to_string())).collect();
        let decoded: Wrapper = decode(&encode(&map).expect("encodes")).expect("decodes");
        assert_eq!(decoded.map, map);
    }
}
