-- Room on every page for an enrolment's next version: a step changes none of the indexed
-- columns (lead, contact and phone keys), so with room on its page the rewrite is HOT and
-- writes no index entries. Applies to pages written from now on; SQLite has no such setting.
ALTER TABLE enrollments SET (fillfactor = 70);
