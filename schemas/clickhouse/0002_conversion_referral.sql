-- Migration 2: conversion, the activation -> conversion funnel, and referral, per member and scope.
-- ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS: the runner skips a column that exists.
ALTER TABLE {db}.member_facts ADD COLUMN converted UInt8;
ALTER TABLE {db}.member_facts ADD COLUMN conversion_value_micros Int64;
ALTER TABLE {db}.member_facts ADD COLUMN first_conversion_ms Int64;
ALTER TABLE {db}.member_facts ADD COLUMN conversion_window_end_ms Int64;
ALTER TABLE {db}.member_facts ADD COLUMN activated_then_converted UInt8;
ALTER TABLE {db}.member_facts ADD COLUMN inviter_id String;
ALTER TABLE {db}.member_facts ADD COLUMN referral_window_end_ms Int64;
