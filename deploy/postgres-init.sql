-- One database per service: services never read each other's storage.
CREATE DATABASE auth;
CREATE DATABASE catalog;
