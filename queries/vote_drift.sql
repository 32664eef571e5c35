-- Invariant check from seed 002 (Django paid voting): `total += n; save()` under concurrency made stored
-- vote totals drift from the verified payments behind them (doubled or lost votes).
-- Every row returned is one candidate whose stored total disagrees with its payments.
-- Works unchanged on PostgreSQL, MySQL/MariaDB and SQLite.
SELECT c.id AS candidate_id,
       c.name,
       c.total_votes AS stored_total,
       COALESCE(p.paid_votes, 0) AS paid_votes,
       c.total_votes - COALESCE(p.paid_votes, 0) AS drift
FROM candidate c
LEFT JOIN (
    SELECT candidate_id, SUM(votes) AS paid_votes
    FROM payment
    WHERE verified = TRUE
    GROUP BY candidate_id
) p ON p.candidate_id = c.id
WHERE c.total_votes <> COALESCE(p.paid_votes, 0)
