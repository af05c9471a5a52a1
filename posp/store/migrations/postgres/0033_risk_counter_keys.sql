-- Velocity-counter keys begin with their subject (posp.risk.facts, "Key layout"):
-- c|<card>|d|<day> becomes c:<card>|d|<day>, ct|<card>|<terminal>|d|<day> becomes
-- c:<card>|t:<terminal>|d|<day>, and so on, as on SQLite (migration 0033 there).
-- The rules are those of posp.risk.counters.current_key (a property test holds
-- the two to each other): a key of another shape is left as it is.
-- bars = the number of | in the key.
UPDATE risk_counters SET counter_key = CASE
    WHEN counter_key LIKE 'c|%' THEN 'c:' || substr(counter_key, 3)
    WHEN counter_key LIKE 'm|%' THEN 'm:' || substr(counter_key, 3)
    WHEN counter_key LIKE 'ct|%' THEN
        'c:' || split_part(counter_key, '|', 2) || '|t:' || split_part(counter_key, '|', 3)
        || '|' || split_part(counter_key, '|', 4) || '|' || split_part(counter_key, '|', 5)
    WHEN counter_key LIKE 'ctl|%' THEN
        'c:' || split_part(counter_key, '|', 2) || '|t:' || split_part(counter_key, '|', 3)
        || '|l'
    WHEN counter_key LIKE 'ctm|%' THEN
        'c:' || split_part(counter_key, '|', 2) || '|t:' || split_part(counter_key, '|', 3)
        || '|m|' || split_part(counter_key, '|', 4)
    WHEN counter_key LIKE 'tf|%' THEN
        't:' || split_part(counter_key, '|', 2) || '|f|' || split_part(counter_key, '|', 3)
    ELSE
        'c:' || split_part(counter_key, '|', 2) || '|n' || substr(counter_key, 3, 8)
        || '|' || split_part(counter_key, '|', 3)
    END
WHERE (length(counter_key) - length(replace(counter_key, '|', '')) = 3
        AND (counter_key LIKE 'c|%' OR counter_key LIKE 'm|%' OR counter_key LIKE 'ctm|%'))
    OR (length(counter_key) - length(replace(counter_key, '|', '')) = 4
        AND counter_key LIKE 'ct|%')
    OR (length(counter_key) - length(replace(counter_key, '|', '')) = 2
        AND (counter_key LIKE 'ctl|%' OR counter_key LIKE 'tf|%'
            OR counter_key ~ '^cn[0-9]{8}[|]'));
