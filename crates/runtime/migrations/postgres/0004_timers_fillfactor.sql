-- Room on every page for a claimed row's new version: a claim changes no indexed column, so
-- with room on its page the update is HOT and writes no index entries (on full pages nearly
-- every claim wrote one into each of the table's three indexes). Applies to pages written
-- from now on; SQLite has no such setting.
ALTER TABLE timers SET (fillfactor = 70);
