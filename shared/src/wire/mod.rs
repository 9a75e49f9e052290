//! Every JSON body of the protocol. Field order follows PROTOCOL.md; optional fields are omitted, never `null`.

mod auth;
mod bounded;
mod download;
mod error;
mod ext;
mod stream;
mod upload;

pub use auth::*;
pub use bounded::*;
pub use download::*;
pub use error::*;
pub use ext::*;
pub use stream::*;
pub use upload::*;

use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
pub use serde_json::value::RawValue;

/// A payload object kept verbatim (key order, integer digits and all).
pub type Payload = Box<RawValue>;

/// Go's `encoding/json` leaves a field at its zero value when the JSON says `null`; classic clients rely on
/// that, so `null` reads as the default here too.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Derived struct impls also accept JSON arrays (positional fields); Go rejects them, and so do we. `MapOnly<T>`
/// reads `T` from a JSON object only.
pub(crate) struct MapOnly<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = MapOnly<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(MapOnly)
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}
