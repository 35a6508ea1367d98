//! One lead's story as the owner and the marketer read it: every recorded event in the order
//! it happened, with the context that travelled with the lead (source, campaign, page, what
//! they asked), so nobody has to reconstruct it from five services.
//!
//! The service records a [`TimelineEntry`] per event it consumes about the lead, in the
//! order it consumed them. Events from different services arrive out of order, so the
//! timeline sorts by the time each happened; events at the same instant keep the order they
//! arrived in (within one service that is the order they happened in).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One thing that happened to a lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// The service that emitted it, e.g. `activation`.
    pub service: String,
    /// The event type, e.g. `LeadActivated`.
    pub event_type: String,
    /// When it happened.
    pub at: Timestamp,
    /// What happened, in words, without personal data ("activated by ann by call, 4m after
    /// arrival, within SLA").
    pub summary: String,
}

/// A lead's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub lead: Uuid,
    /// The preserved context as labelled fields, in the order given; blank ones left out.
    pub context: Vec<(String, String)>,
    /// Earliest first.
    pub entries: Vec<TimelineEntry>,
}

/// Labels of the preserved context that hold what the person wrote: an erasure removes them,
/// as it blanks the message of activation's context packet. Where the lead came from (source,
/// campaign, channel, page) and what kind of interest it showed stay.
const PERSONAL_CONTEXT: &[&str] = &["message"];

/// The preserved context without the person's own words (for an erasure).
pub fn erase_personal_context(context: &mut Vec<(String, String)>) {
    context.retain(|(label, _)| !PERSONAL_CONTEXT.contains(&label.as_str()));
}

/// The timeline of `lead` from its `entries` in arrival order.
pub fn timeline(
    lead: Uuid,
    context: Vec<(String, String)>,
    mut entries: Vec<TimelineEntry>,
) -> Timeline {
    // A stable sort: equal times keep their arrival order.
    entries.sort_by_key(|e| e.at);
    let context = context
        .into_iter()
        .filter(|(label, value)| !label.trim().is_empty() && !value.trim().is_empty())
        .collect();
    Timeline {
        lead,
        context,
        entries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erasing_keeps_where_the_lead_came_from_but_not_what_they_wrote() {
        let mut context = vec![
            ("source".to_owned(), "webinar".to_owned()),
            ("message".to_owned(), "Call me after 5, Ada".to_owned()),
            ("campaign".to_owned(), "q4".to_owned()),
        ];
        erase_personal_context(&mut context);
        assert_eq!(
            context,
            [
                ("source".to_owned(), "webinar".to_owned()),
                ("campaign".to_owned(), "q4".to_owned())
            ]
        );
    }
    use crate::domain::testing::{day, id};

    fn entry(service: &str, event_type: &str, at: Timestamp) -> TimelineEntry {
        TimelineEntry {
            service: service.into(),
            event_type: event_type.into(),
            at,
            summary: format!("{event_type} summary"),
        }
    }

    #[test]
    fn entries_sort_by_time_then_arrival() {
        let arrived = vec![
            // followup's stream was read before intake's
            entry("followup", "LeadEnrolled", day(3, "09:05")),
            entry("followup", "FollowUpDue", day(3, "09:05")),
            entry("intake", "LeadAccepted", day(3, "09:00")),
            entry("activation", "LeadAssigned", day(3, "09:00")),
            entry("activation", "LeadActivated", day(3, "09:04")),
        ];
        let t = timeline(
            id(1),
            vec![
                ("source".into(), "webinar".into()),
                ("landing_page".into(), " ".into()),
                ("message".into(), "need routing for 40 reps".into()),
            ],
            arrived,
        );
        let order: Vec<&str> = t.entries.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            order,
            [
                "LeadAccepted",
                "LeadAssigned",
                "LeadActivated",
                "LeadEnrolled",
                "FollowUpDue"
            ]
        );
        assert_eq!(
            t.context,
            [
                ("source".to_owned(), "webinar".to_owned()),
                ("message".to_owned(), "need routing for 40 reps".to_owned())
            ]
        );
    }
}
