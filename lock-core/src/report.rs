//! What an error or a listing says about a holder, from its record.

use std::time::SystemTime;

use crate::raw::Record;
use crate::Holder;

/// The holder a record describes, for errors and listings.
pub(crate) fn holder_of(rec: Option<Record>) -> Option<Box<Holder>> {
    holder_record(rec).map(Box::new)
}

/// The holder a record describes.
pub(crate) fn holder_record(rec: Option<Record>) -> Option<Holder> {
    let rec = rec?;
    let mut h = Holder::new();
    h.pid = Some(crate::owner::pid());
    h.since = SystemTime::now().checked_sub(crate::clock::since(rec.since));
    h.since_observed = rec.observed();
    h.detail = Some(rec.facts.describe());
    if rec.facts.site.is_known() {
        h.location = Some(rec.facts.site.to_string());
    }
    Some(h)
}
