-- db.sql: the database shell workload of benches/run.sh, which replaces @N@
-- with the row count and runs it as `sqlite3 -batch :memory: ".read FILE"`.
-- Inserts N rows in one transaction, builds two indexes (one on text that
-- looks random: four multiplicative hashes of the row number, so that the
-- index is built in no particular order, yet every run does the same work),
-- then runs aggregate, group-by and join queries, an update and a delete.
.bail on
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, v INTEGER NOT NULL);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < @N@)
INSERT INTO t SELECT x,
    printf('%08X%08X%08X%08X', (x * 2654435761) % 4294967296, (x * 2246822519) % 4294967296,
           (x * 3266489917) % 4294967296, (x * 668265263) % 4294967296),
    x * 3 FROM c;
COMMIT;
CREATE INDEX t_name ON t(name);
CREATE INDEX t_v97 ON t(v % 97);
CREATE TABLE g(k INTEGER PRIMARY KEY, label TEXT NOT NULL);
WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < 96)
INSERT INTO g SELECT x, 'group-' || x FROM c;
SELECT count(*), sum(v), min(length(name)), max(length(name)) FROM t;
SELECT v % 7 AS k, count(*), sum(v), avg(id) FROM t GROUP BY k ORDER BY k;
SELECT g.label, count(*), sum(t.v) FROM t JOIN g ON g.k = t.v % 97
  GROUP BY g.label ORDER BY count(*) DESC, g.label LIMIT 5;
SELECT count(DISTINCT substr(name, 1, 2)) <= 256 FROM t;
SELECT count(*), sum(length(name)) FROM (SELECT name FROM t ORDER BY name LIMIT 1000 OFFSET 10);
SELECT count(*) FROM t AS a JOIN t AS b ON b.id = a.id + 1 WHERE a.v % 5 = 0;
UPDATE t SET name = lower(name) WHERE id % 10 = 0;
DELETE FROM t WHERE id % 3 = 0;
SELECT count(*), sum(v) FROM t;
