-- Run by the postgres image on the first start of an empty data volume only:
-- a second database on the same server for the Prefect server's own state.
CREATE DATABASE prefect OWNER etlnorm;
