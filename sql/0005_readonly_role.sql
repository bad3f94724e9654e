-- Read-only access for Grafana (and any other reader): the group role cbm_grafana.
--
-- The role is NOLOGIN and holds no secret. Deployment creates the login that
-- uses it, with a password from the environment, e.g.
--     CREATE ROLE grafana LOGIN PASSWORD '...' IN ROLE cbm_grafana;
-- (compose runs grafana/db-init/grafana-reader.sh for that; see grafana/README.md).
--
-- Roles belong to the cluster, not to one database: the role may already exist
-- because another database on the same server was migrated first (the tests
-- create many), so it is created only when missing, and a concurrent migration
-- of another database that wins the race is not an error. Privileges, by
-- contrast, belong to this database and are granted every time.
--
-- SELECT covers every table and view of the schema now, and the default
-- privileges cover those later migrations create (as long as the same role
-- runs the migrations, which cbm db migrate does). Nothing else is granted:
-- the reader can neither write nor create objects in the schema.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cbm_grafana') THEN
        IF NOT EXISTS (
            SELECT FROM pg_roles
            WHERE rolname = current_user AND (rolsuper OR rolcreaterole)
        ) THEN
            RAISE EXCEPTION 'role cbm_grafana does not exist and % may not create roles', current_user
                USING HINT = 'As an administrator run: CREATE ROLE cbm_grafana NOLOGIN; then migrate again.';
        END IF;
        BEGIN
            CREATE ROLE cbm_grafana NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by the migration of another database
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO cbm_grafana', current_schema());
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO cbm_grafana', current_schema());
    EXECUTE format(
        'ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO cbm_grafana',
        current_schema());
END
$$;
