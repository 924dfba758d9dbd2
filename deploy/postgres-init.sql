-- One database per service: services never read each other's storage.
CREATE DATABASE auth;
CREATE DATABASE catalog;
-- Only roles granted CONNECT may connect (CREATE DATABASE grants CONNECT
-- and TEMP to PUBLIC): no other login of this server may even NOTIFY on
-- the services' channels.
REVOKE CONNECT, TEMP ON DATABASE auth FROM PUBLIC;
REVOKE CONNECT, TEMP ON DATABASE catalog FROM PUBLIC;
