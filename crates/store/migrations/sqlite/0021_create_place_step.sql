-- instance.create gained a first step, `place` (hosts mode; skipped by the embedded driver). An
-- operation's progress is the index of its next step to run or to undo, so the saved position of
-- every create still running when this release starts moves one step on: without this, a create
-- resumed forward would run its previous step again, and one being undone would skip the undo of
-- the step it had reached (leaking what that step made).
UPDATE operations SET step = step + 1 WHERE kind = 'instance.create' AND status = 'running' AND step >= 0;
UPDATE operations SET waited_step = waited_step + 1
    WHERE kind = 'instance.create' AND status = 'running' AND waited_step >= 0;
