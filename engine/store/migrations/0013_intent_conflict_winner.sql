-- A change intent keeps the conflict's winner, so a write logged from its intent (the run that
-- made it died before its commit) names the winner like one logged by its own run.
ALTER TABLE change_intents ADD COLUMN conflict_winner text;
