//! Engagement and silence: what the lead did, and what it means when they did not answer.
//!
//! Silence is typed, not counted. An email nobody opened says the channel is not reaching
//! them; an email opened but not answered says the message did not land; a click says they
//! are interested enough to be called; an out-of-office says when to come back; a bounce
//! says the channel is broken. Each type has its own move, set per type in the playbook's
//! `[followup.silence]` table (see [`SilenceMove`]).

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::Channel;

/// Something the lead did, as the caller (an email sender, a CRM, the owner's tooling)
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Engagement {
    /// A reply, classified by the caller.
    Reply {
        sentiment: ReplySentiment,
    },
    MeetingBooked,
    /// An email was opened.
    Open,
    /// A link in a message was clicked.
    Click,
    /// The lead visited the site.
    SiteVisit,
    /// An automatic out-of-office reply, with the return date when it gave one.
    OutOfOffice {
        until: Option<Timestamp>,
    },
    /// A message on `channel` could not be delivered; hard when it never will be.
    Bounce {
        channel: Channel,
        hard: bool,
    },
    Unsubscribe,
}

impl Engagement {
    /// The kind, as the playbook's momentum weights and the plan view name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Reply { .. } => "reply",
            Self::MeetingBooked => "meeting_booked",
            Self::Open => "open",
            Self::Click => "click",
            Self::SiteVisit => "site_visit",
            Self::OutOfOffice { .. } => "out_of_office",
            Self::Bounce { .. } => "bounce",
            Self::Unsubscribe => "unsubscribe",
        }
    }

    /// Whether the contact asked not to be contacted again.
    pub fn is_opt_out(&self) -> bool {
        matches!(
            self,
            Self::Unsubscribe
                | Self::Reply {
                    sentiment: ReplySentiment::RemoveMe
                }
        )
    }
}

/// How a reply reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplySentiment {
    /// Interested: hand the lead on.
    Positive,
    /// A question, a referral, "tell me more": a conversation, so hand it on too.
    Neutral,
    /// Not interested.
    Negative,
    /// "Take me off your list": an opt-out.
    RemoveMe,
}

impl ReplySentiment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Positive => "positive",
            Self::Neutral => "neutral",
            Self::Negative => "negative",
            Self::RemoveMe => "remove_me",
        }
    }
}

/// A kind of silence: a touch that drew no reply, read by what did happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Silence {
    /// The email was sent and never opened.
    NoOpen,
    /// The email was opened, not answered.
    OpenedNoReply,
    /// A link was clicked, no reply.
    Clicked,
    /// An out-of-office reply.
    OutOfOffice,
    /// The message bounced.
    Bounced,
}

impl Silence {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoOpen => "no_open",
            Self::OpenedNoReply => "opened_no_reply",
            Self::Clicked => "clicked",
            Self::OutOfOffice => "out_of_office",
            Self::Bounced => "bounced",
        }
    }
}

impl fmt::Display for Silence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What followup does about a kind of silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SilenceMove {
    /// Nothing: the next step goes as planned.
    Continue,
    /// The next step goes out on another channel than the silent one: the cadence's
    /// `on_silence` channel when it has one that works, else the first usable channel.
    SwitchChannel,
    /// The next step takes another angle than the silent one: the cadence's `on_silence`
    /// strategy when it differs, else the next angle in the rotation.
    ChangeAngle,
    /// The next step is brought forward to the next business hour, as a call.
    CallNow,
    /// Pause the cadence until the lead is back, then resume. Only for out-of-office.
    PauseUntilReturn,
}

impl SilenceMove {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Continue => "continue",
            Self::SwitchChannel => "switch_channel",
            Self::ChangeAngle => "change_angle",
            Self::CallNow => "call_now",
            Self::PauseUntilReturn => "pause_until_return",
        }
    }
}

impl fmt::Display for SilenceMove {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An engagement and when it was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub engagement: Engagement,
    pub at: Timestamp,
}

/// The silence a sent email met between `sent` and `until`, read from the engagements:
/// a click beats an open beats nothing. `None` when the lead did something a silence move
/// has already answered (a bounce or an out-of-office, acted on when they arrived).
pub fn read_email_silence(
    engagements: &[Recorded],
    sent: Timestamp,
    until: Timestamp,
) -> Option<Silence> {
    let since: Vec<&Engagement> = engagements
        .iter()
        .filter(|r| r.at >= sent && r.at <= until)
        .map(|r| &r.engagement)
        .collect();
    if since.iter().any(|e| {
        matches!(
            e,
            Engagement::Bounce { .. } | Engagement::OutOfOffice { .. }
        )
    }) {
        return None;
    }
    if since.iter().any(|e| matches!(e, Engagement::Click)) {
        Some(Silence::Clicked)
    } else if since.iter().any(|e| matches!(e, Engagement::Open)) {
        Some(Silence::OpenedNoReply)
    } else {
        Some(Silence::NoOpen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn engagements_read_as_the_caller_writes_them() {
        let cases = [
            (
                r#"{"kind":"reply","sentiment":"remove_me"}"#,
                Engagement::Reply {
                    sentiment: ReplySentiment::RemoveMe,
                },
            ),
            (
                r#"{"kind":"bounce","channel":"email","hard":true}"#,
                Engagement::Bounce {
                    channel: Channel::Email,
                    hard: true,
                },
            ),
            (
                r#"{"kind":"out_of_office","until":"2026-04-06T07:00:00Z"}"#,
                Engagement::OutOfOffice {
                    until: Some(ts("2026-04-06T07:00:00Z")),
                },
            ),
            (r#"{"kind":"unsubscribe"}"#, Engagement::Unsubscribe),
        ];
        for (json, want) in cases {
            assert_eq!(serde_json::from_str::<Engagement>(json).unwrap(), want);
        }
        assert!(Engagement::Unsubscribe.is_opt_out());
        assert!(
            !Engagement::Reply {
                sentiment: ReplySentiment::Negative
            }
            .is_opt_out()
        );
    }

    #[test]
    fn email_silence_is_read_from_what_happened_after_sending() {
        let sent = ts("2026-03-02T10:00:00Z");
        let until = ts("2026-03-04T10:00:00Z");
        let at = |e: Engagement, t: &str| Recorded {
            engagement: e,
            at: ts(t),
        };
        let before = at(Engagement::Click, "2026-03-01T10:00:00Z");
        let open = at(Engagement::Open, "2026-03-02T11:00:00Z");
        let click = at(Engagement::Click, "2026-03-02T12:00:00Z");
        let visit = at(Engagement::SiteVisit, "2026-03-03T12:00:00Z");
        let ooo = at(
            Engagement::OutOfOffice { until: None },
            "2026-03-02T10:01:00Z",
        );
        let cases = [
            (vec![], Some(Silence::NoOpen)),
            (vec![before.clone()], Some(Silence::NoOpen)),
            (vec![visit.clone()], Some(Silence::NoOpen)),
            (vec![open.clone()], Some(Silence::OpenedNoReply)),
            (vec![open.clone(), click], Some(Silence::Clicked)),
            (vec![open, ooo], None),
        ];
        for (engagements, want) in cases {
            assert_eq!(
                read_email_silence(&engagements, sent, until),
                want,
                "{engagements:?}"
            );
        }
    }
}
