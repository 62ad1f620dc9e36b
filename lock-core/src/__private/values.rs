//! Option values written as expressions (`timeout_ms = LIMIT`, `permits = cfg.slots`),
//! converted per call.

use std::time::Duration;

/// A timeout in milliseconds: an unsigned integer, an `Option` of one (`None`: wait
/// without a timeout), or a `Duration`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a number of milliseconds",
    label = "expected an unsigned integer, a `Duration`, or an `Option` of one",
    note = "`timeout_ms` and `lease_ms` take a `u64` (or `u8`..`u128`, `usize`), a `std::time::Duration`, or an `Option` of those (`None`: no timeout)"
)]
pub trait IntoMillis {
    /// The timeout in milliseconds, if any.
    fn into_millis(self) -> Option<u64>;
}

macro_rules! millis_from_uint {
    ($($t:ty),*) => {$(
        impl IntoMillis for $t {
            #[inline]
            #[allow(clippy::unnecessary_fallible_conversions)]
            fn into_millis(self) -> Option<u64> {
                Some(u64::try_from(self).unwrap_or(u64::MAX))
            }
        }
        impl IntoMillis for &$t {
            #[inline]
            fn into_millis(self) -> Option<u64> {
                (*self).into_millis()
            }
        }
    )*};
}

millis_from_uint!(u8, u16, u32, u64, usize, u128);

impl IntoMillis for Duration {
    #[inline]
    fn into_millis(self) -> Option<u64> {
        Some(u64::try_from(self.as_millis()).unwrap_or(u64::MAX))
    }
}

impl<T: IntoMillis> IntoMillis for Option<T> {
    #[inline]
    fn into_millis(self) -> Option<u64> {
        self.and_then(IntoMillis::into_millis)
    }
}

impl IntoMillis for &Duration {
    #[inline]
    fn into_millis(self) -> Option<u64> {
        (*self).into_millis()
    }
}

impl<T: IntoMillis + Copy> IntoMillis for &Option<T> {
    #[inline]
    fn into_millis(self) -> Option<u64> {
        (*self).into_millis()
    }
}

/// A number of permits: an unsigned integer. Values beyond `u32` become `u32::MAX`,
/// which the request then refuses as too many.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a number of permits",
    label = "expected an unsigned integer",
    note = "`permits` takes a `u32` (or `u8`, `u16`, `u64`, `usize`) of at least 1"
)]
pub trait IntoPermits {
    /// The number of permits.
    fn into_permits(self) -> u32;
}

macro_rules! permits_from_uint {
    ($($t:ty),*) => {$(
        impl IntoPermits for $t {
            #[inline]
            #[allow(clippy::unnecessary_fallible_conversions)]
            fn into_permits(self) -> u32 {
                u32::try_from(self).unwrap_or(u32::MAX)
            }
        }
        impl IntoPermits for &$t {
            #[inline]
            fn into_permits(self) -> u32 {
                (*self).into_permits()
            }
        }
    )*};
}

permits_from_uint!(u8, u16, u32, u64, usize);
