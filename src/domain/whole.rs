//! Whole numbers in JSON bodies. JSON has one number type, and clients
//! written in JavaScript or Python send `1432.0` or `36e2` for a whole
//! number as readily as `1432`: where the API asks for an integer, any
//! number with no fractional part is that integer. A fraction, a string or
//! a value outside the field's range is refused in the API's words.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::{self, Visitor};

/// An integer type a body field may hold.
pub trait Whole: TryFrom<i64> + Copy {
    const MIN: i64;
    const MAX: i64;
}

impl Whole for i64 {
    const MIN: i64 = i64::MIN;
    const MAX: i64 = i64::MAX;
}

impl Whole for u32 {
    const MIN: i64 = 0;
    const MAX: i64 = u32::MAX as i64;
}

/// `deserialize_with` for an `Option<T>` integer field (with
/// `#[serde(default)]`): `null` is `None`.
pub fn option<'de, D: Deserializer<'de>, T: Whole>(d: D) -> Result<Option<T>, D::Error> {
    d.deserialize_any(WholeVisitor::<T>(PhantomData))
}

struct WholeVisitor<T>(PhantomData<T>);

impl<T: Whole> WholeVisitor<T> {
    fn fit<E: de::Error>(v: i64) -> Result<Option<T>, E> {
        T::try_from(v).map(Some).map_err(|_| out_of_range::<E, T>())
    }
}

fn out_of_range<E: de::Error, T: Whole>() -> E {
    if T::MIN == 0 {
        E::custom(format!("must be a whole number from 0 to {}", T::MAX))
    } else {
        E::custom("must be a whole number within the 64-bit range")
    }
}

impl<'de, T: Whole> Visitor<'de> for WholeVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Self::fit(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v)
            .map_err(|_| out_of_range::<E, T>())
            .and_then(Self::fit)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.fract() != 0.0 || !v.is_finite() {
            return Err(E::custom("must be a whole number"));
        }
        // Every f64 in this range converts exactly; 2^63 itself does not fit.
        if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&v) {
            return Err(out_of_range::<E, T>());
        }
        Self::fit(v as i64)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct Body {
        #[serde(default, deserialize_with = "super::option")]
        n: Option<u32>,
        #[serde(default, deserialize_with = "super::option")]
        i: Option<i64>,
    }

    fn parse(json: &str) -> Result<Body, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_floats_are_integers_and_the_rest_is_refused() {
        let b = parse(r#"{"n": 1432.0, "i": -36e2}"#).unwrap();
        assert_eq!((b.n, b.i), (Some(1432), Some(-3600)));
        let b = parse(r#"{"n": null}"#).unwrap();
        assert_eq!((b.n, b.i), (None, None));
        for (json, says) in [
            (r#"{"n": 1.5}"#, "must be a whole number"),
            (
                r#"{"n": -1}"#,
                "must be a whole number from 0 to 4294967295",
            ),
            (r#"{"n": 4294967296}"#, "from 0 to 4294967295"),
            (r#"{"i": 1e30}"#, "within the 64-bit range"),
            (r#"{"i": 18446744073709551615}"#, "within the 64-bit range"),
            (r#"{"n": "7"}"#, "expected a whole number"),
        ] {
            let e = parse(json).unwrap_err();
            assert!(e.contains(says), "{json}: {e}");
        }
    }
}
