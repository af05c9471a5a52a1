-- Velocity-counter keys begin with their subject (posp.risk.facts, "Key layout"):
-- c|<card>|d|<day> becomes c:<card>|d|<day>, ct|<card>|<terminal>|d|<day> becomes
-- c:<card>|t:<terminal>|d|<day>, and so on, so that a card's counters and its
-- card-on-terminal counters sit side by side in the key's B-tree and a hold
-- dirties about two pages.  The rules are those of posp.risk.counters.current_key
-- (a property test holds the two to each other): a key of another shape is left
-- as it is.  bars = the number of | in the key.
UPDATE risk_counters SET counter_key = CASE
    WHEN counter_key GLOB 'c|*' THEN 'c:' || substr(counter_key, 3)
    WHEN counter_key GLOB 'm|*' THEN 'm:' || substr(counter_key, 3)
    WHEN counter_key GLOB 'ct|*' THEN
        'c:' || substr(counter_key, 4, instr(substr(counter_key, 4), '|') - 1)
        || '|t:' || substr(counter_key, 4 + instr(substr(counter_key, 4), '|'))
    WHEN counter_key GLOB 'ctl|*' THEN
        'c:' || substr(counter_key, 5, instr(substr(counter_key, 5), '|') - 1)
        || '|t:' || substr(counter_key, 5 + instr(substr(counter_key, 5), '|')) || '|l'
    WHEN counter_key GLOB 'ctm|*' THEN
        'c:' || substr(counter_key, 5, instr(substr(counter_key, 5), '|') - 1)
        || '|t:' || substr(
            counter_key,
            5 + instr(substr(counter_key, 5), '|'),
            instr(substr(counter_key, 5 + instr(substr(counter_key, 5), '|')), '|') - 1)
        || '|m|' || substr(
            counter_key,
            5 + instr(substr(counter_key, 5), '|')
            + instr(substr(counter_key, 5 + instr(substr(counter_key, 5), '|')), '|'))
    WHEN counter_key GLOB 'tf|*' THEN
        't:' || substr(counter_key, 4, instr(substr(counter_key, 4), '|') - 1)
        || '|f|' || substr(counter_key, 4 + instr(substr(counter_key, 4), '|'))
    ELSE
        'c:' || substr(counter_key, 12, instr(substr(counter_key, 12), '|') - 1)
        || '|n' || substr(counter_key, 3, 8)
        || '|' || substr(counter_key, 12 + instr(substr(counter_key, 12), '|'))
    END
WHERE (length(counter_key) - length(replace(counter_key, '|', '')) = 3
        AND (counter_key GLOB 'c|*' OR counter_key GLOB 'm|*' OR counter_key GLOB 'ctm|*'))
    OR (length(counter_key) - length(replace(counter_key, '|', '')) = 4
        AND counter_key GLOB 'ct|*')
    OR (length(counter_key) - length(replace(counter_key, '|', '')) = 2
        AND (counter_key GLOB 'ctl|*' OR counter_key GLOB 'tf|*'
            OR counter_key GLOB 'cn[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]|*'));
