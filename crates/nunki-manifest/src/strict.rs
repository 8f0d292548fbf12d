//! Serde helpers that close the alternative encodings serde accepts by default.
//!
//! A derived struct also deserializes from a JSON *array* of its field values, and a derived
//! unit enum also from a one-key object (`{"Genoa": null}`). Neither is a manifest spelling, and
//! accepting them would let two tools read the same signed bytes differently, so the security
//! documents route their nested structs and enums through these helpers.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, StringDeserializer};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Wraps a `T` that may only be read from a JSON object.
#[derive(Debug)]
pub(crate) struct MapOnly<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(MapOnly)
    }
}

/// `deserialize_with` for a struct field that must be a JSON object.
pub(crate) fn map_only<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    MapOnly::<T>::deserialize(deserializer).map(|m| m.0)
}

/// `deserialize_with` for a list whose items must be JSON objects.
pub(crate) fn vec_map_only<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Vec::<MapOnly<T>>::deserialize(deserializer).map(|v| v.into_iter().map(|m| m.0).collect())
}

/// `deserialize_with` for a unit-variant enum that must be spelled as a JSON string.
pub(crate) fn string_enum<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let s = String::deserialize(deserializer)?;
    T::deserialize(StringDeserializer::<D::Error>::new(s))
}

/// `deserialize_with` for a list of unit-variant enums, each spelled as a JSON string.
pub(crate) fn vec_string_enum<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Vec::<String>::deserialize(deserializer)?
        .into_iter()
        .map(|s| T::deserialize(StringDeserializer::<D::Error>::new(s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Point {
        x: u8,
        y: u8,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    enum Colour {
        Red,
    }

    #[test]
    fn objects_pass_and_arrays_are_refused() {
        let p: MapOnly<Point> = serde_json::from_str(r#"{"x":1,"y":2}"#).unwrap();
        assert_eq!(p.0, Point { x: 1, y: 2 });
        // Plain derive accepts the array form; the wrapper must not.
        assert!(serde_json::from_str::<Point>("[1,2]").is_ok());
        let err = serde_json::from_str::<MapOnly<Point>>("[1,2]").unwrap_err();
        assert!(err.to_string().contains("expected a JSON object"), "{err}");
    }

    #[test]
    fn unknown_fields_still_refused_through_the_wrapper() {
        assert!(serde_json::from_str::<MapOnly<Point>>(r#"{"x":1,"y":2,"z":3}"#).is_err());
    }

    #[test]
    fn enums_only_from_strings() {
        #[derive(Debug, Deserialize)]
        struct Holder {
            #[serde(deserialize_with = "string_enum")]
            c: Colour,
        }
        let h: Holder = serde_json::from_str(r#"{"c":"Red"}"#).unwrap();
        assert_eq!(h.c, Colour::Red);
        assert!(serde_json::from_str::<Colour>(r#"{"Red":null}"#).is_ok());
        assert!(serde_json::from_str::<Holder>(r#"{"c":{"Red":null}}"#).is_err());
        assert!(serde_json::from_str::<Holder>(r#"{"c":"red"}"#).is_err());
    }

    #[test]
    fn enum_lists_only_from_strings() {
        #[derive(Debug, Deserialize)]
        struct Holder {
            #[serde(deserialize_with = "vec_string_enum")]
            c: Vec<Colour>,
        }
        let h: Holder = serde_json::from_str(r#"{"c":["Red","Red"]}"#).unwrap();
        assert_eq!(h.c, vec![Colour::Red, Colour::Red]);
        assert!(serde_json::from_str::<Holder>(r#"{"c":[{"Red":null}]}"#).is_err());
        assert!(serde_json::from_str::<Holder>(r#"{"c":"Red"}"#).is_err());
    }
}
