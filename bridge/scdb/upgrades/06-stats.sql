-- v5 -> v6: Anonymous daily message and file counts
-- Anonymous daily counts for statistics: no identities, no content.
CREATE TABLE sikkerchat_stats_daily (
    day       TEXT   NOT NULL,
    direction TEXT   NOT NULL,
    kind      TEXT   NOT NULL,
    count     BIGINT NOT NULL,
    PRIMARY KEY (day, direction, kind)
);
