//! `wasmcloud:postgres` carries floats as `hashable-f64`: the (mantissa, exponent, sign) of
//! `f64::integer_decode`, so values can be hashed and compared exactly. Both the provider and
//! components convert with these two functions.

pub fn to_parts(value: f64) -> (u64, i16, i8) {
    let bits = value.to_bits();
    let sign: i8 = if bits >> 63 == 0 { 1 } else { -1 };
    let raw_exponent = ((bits >> 52) & 0x7ff) as i16;
    let fraction = bits & 0x000f_ffff_ffff_ffff;
    let mantissa = if raw_exponent == 0 {
        fraction << 1
    } else {
        fraction | 0x0010_0000_0000_0000
    };
    (mantissa, raw_exponent - 1075, sign)
}

pub fn from_parts((mantissa, exponent, sign): (u64, i16, i8)) -> f64 {
    // Scaling by a power of two is exact, but 2^exponent alone can leave f64's range (2^-1074
    // for 1e-300): apply it in two halves so every intermediate stays representable.
    let exponent = i32::from(exponent);
    let half = exponent / 2;
    f64::from(sign) * mantissa as f64 * 2f64.powi(half) * 2f64.powi(exponent - half)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly() {
        for v in [
            0.0,
            1.5,
            -2.25,
            1e-300,
            123456.789,
            f64::MAX,
            -f64::MIN_POSITIVE,
        ] {
            assert_eq!(from_parts(to_parts(v)), v, "{v}");
        }
    }
}
