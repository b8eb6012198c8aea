-- Lets a single statement refuse itself part-way, so that a create that
-- writes several tables in one statement (and one commit) can still apply a
-- rule that depends on what it wrote: the statement fails with SQLSTATE
-- RS001 and every row it wrote is rolled back with it.
CREATE FUNCTION roster_refuse(reason text) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'RS001', MESSAGE = reason;
END
$$;
