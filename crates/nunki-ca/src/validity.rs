//! Validity periods computed from an injected `now`.

use std::time::{SystemTime, UNIX_EPOCH};

use time::{Duration, Month, OffsetDateTime};

use crate::error::CaError;

/// How far `notBefore` lies before `now`, to tolerate clock skew between Coordinator and peers.
pub(crate) const BACKDATE: Duration = Duration::hours(1);
/// CA certificates (root, intermediate, mesh CA) are valid for this many calendar years.
pub(crate) const CA_VALIDITY_YEARS: i32 = 10;
/// Leaf certificates are valid for this many calendar years (capped by the issuing CA).
pub(crate) const LEAF_VALIDITY_YEARS: i32 = 1;

/// A certificate validity period, whole seconds, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validity {
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
}

impl Validity {
    /// `now - 1h ..= now + years` (calendar years; 29 February maps to 28 February).
    pub(crate) fn from_now(now: SystemTime, years: i32) -> Result<Self, CaError> {
        let out_of_range = |bound| CaError::TimeOutOfRange { time: now, bound };
        let at = to_offset_date_time(now).ok_or_else(|| out_of_range("notBefore"))?;
        let not_before = at
            .checked_sub(BACKDATE)
            .ok_or_else(|| out_of_range("notBefore"))?;
        let not_after = add_years(at, years).ok_or_else(|| out_of_range("notAfter"))?;
        // X.509 times stop at 9999; UTCTime starts at 1950 and rcgen only writes
        // GeneralizedTime from 2050, so earlier years would be silently mis-encoded.
        if not_before.year() < 1950 {
            return Err(out_of_range("notBefore"));
        }
        if not_after.year() > 9999 {
            return Err(out_of_range("notAfter"));
        }
        Ok(Self {
            not_before,
            not_after,
        })
    }

    /// This validity with `notAfter` moved back to `limit` if it lies beyond it.
    pub(crate) fn capped_at(self, limit: OffsetDateTime) -> Self {
        Self {
            not_before: self.not_before,
            not_after: self.not_after.min(limit),
        }
    }
}

/// Whole seconds, rounded down, so that the certificate never claims a later start than `now`.
fn to_offset_date_time(t: SystemTime) -> Option<OffsetDateTime> {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).ok()?,
        Err(before) => {
            let before = before.duration();
            let whole = i64::try_from(before.as_secs()).ok()?;
            let floor = i64::from(before.subsec_nanos() > 0);
            whole.checked_neg()?.checked_sub(floor)?
        }
    };
    OffsetDateTime::from_unix_timestamp(secs).ok()
}

fn add_years(t: OffsetDateTime, years: i32) -> Option<OffsetDateTime> {
    let year = t.year().checked_add(years)?;
    match t.replace_year(year) {
        Ok(shifted) => Some(shifted),
        Err(_) if t.month() == Month::February && t.day() == 29 => {
            t.replace_day(28).ok()?.replace_year(year).ok()
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration as StdDuration;

    use time::macros::datetime;

    use super::*;

    fn system_time(dt: OffsetDateTime) -> SystemTime {
        SystemTime::from(dt)
    }

    #[test]
    fn ca_validity_is_one_hour_back_ten_years_forward() {
        let now = system_time(datetime!(2026-03-14 15:09:26.535 UTC));
        let v = Validity::from_now(now, CA_VALIDITY_YEARS).unwrap();
        assert_eq!(v.not_before, datetime!(2026-03-14 14:09:26 UTC));
        assert_eq!(v.not_after, datetime!(2036-03-14 15:09:26 UTC));
    }

    #[test]
    fn leap_day_maps_to_28_february() {
        let now = system_time(datetime!(2028-02-29 12:00 UTC));
        let v = Validity::from_now(now, LEAF_VALIDITY_YEARS).unwrap();
        assert_eq!(v.not_after, datetime!(2029-02-28 12:00 UTC));
        let v = Validity::from_now(now, 4).unwrap();
        assert_eq!(v.not_after, datetime!(2032-02-29 12:00 UTC));
    }

    #[test]
    fn cap_only_shortens() {
        let now = system_time(datetime!(2030-01-01 0:00 UTC));
        let v = Validity::from_now(now, LEAF_VALIDITY_YEARS).unwrap();
        assert_eq!(v.capped_at(datetime!(2040-01-01 0:00 UTC)), v);
        let capped = v.capped_at(datetime!(2030-06-01 0:00 UTC));
        assert_eq!(capped.not_before, v.not_before);
        assert_eq!(capped.not_after, datetime!(2030-06-01 0:00 UTC));
    }

    #[test]
    fn times_outside_x509_range_are_errors() {
        let err = Validity::from_now(UNIX_EPOCH - StdDuration::from_secs(30 * 365 * 86400), 1);
        assert!(matches!(
            err,
            Err(CaError::TimeOutOfRange {
                bound: "notBefore",
                ..
            })
        ));
        let late = system_time(datetime!(9995-01-01 0:00 UTC));
        let err = Validity::from_now(late, CA_VALIDITY_YEARS);
        assert!(matches!(
            err,
            Err(CaError::TimeOutOfRange {
                bound: "notAfter",
                ..
            })
        ));
        let later = UNIX_EPOCH + StdDuration::from_secs(u64::MAX / 4);
        assert!(Validity::from_now(later, 1).is_err());
    }

    #[test]
    fn pre_epoch_rounds_down() {
        let t = UNIX_EPOCH - StdDuration::from_millis(1500);
        assert_eq!(to_offset_date_time(t).unwrap().unix_timestamp(), -2);
        let t = UNIX_EPOCH + StdDuration::from_millis(1500);
        assert_eq!(to_offset_date_time(t).unwrap().unix_timestamp(), 1);
    }
}
