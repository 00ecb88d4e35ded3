-- 0005's first writer stored model metrics and route splits as JSON strings holding an
-- object ('"{\"v1\": 100}"') instead of the object itself. Unwrap them.

UPDATE model_versions SET metrics = (metrics #>> '{}')::jsonb
WHERE jsonb_typeof(metrics) = 'string';
UPDATE model_routes SET arms = (arms #>> '{}')::jsonb
WHERE jsonb_typeof(arms) = 'string';
UPDATE model_route_history SET arms = (arms #>> '{}')::jsonb
WHERE jsonb_typeof(arms) = 'string';
