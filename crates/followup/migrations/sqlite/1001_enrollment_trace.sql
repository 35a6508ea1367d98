-- The lead's own trace: the W3C trace context (`key=value` lines) of the span the lead was
-- enrolled in (the consume of its LeadActivated, which continues the lead's trace from
-- intake). Written once, when the enrolment is created. Changes made later on a caller's
-- behalf (a completed task, an engagement, a pause) continue this trace, linked to the
-- caller's, so the steps they reschedule stay in the trace that follows the lead.
ALTER TABLE enrollments ADD COLUMN trace_context TEXT NOT NULL DEFAULT '';
