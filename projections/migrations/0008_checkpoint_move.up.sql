-- Moves a consumer's checkpoint from where its session last left it, or fails the
-- transaction. A consumer sends its whole pass in one pipelined batch (BEGIN, this
-- move, the read-model writes, COMMIT): a compare-and-set whose zero rows only the
-- client could see would be read after the COMMIT had already run. The UPDATE takes the
-- row lock first, as the locking read of the slower path does, so a rebuild holding the
-- row makes it wait, then find the row moved.
CREATE OR REPLACE FUNCTION projection_checkpoint_move(p_consumer text, p_from_commit bigint, p_from_prepare bigint,
                                           p_to_commit bigint, p_to_prepare bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE projection_checkpoints
       SET commit = p_to_commit, prepare = p_to_prepare, updated_at = CURRENT_TIMESTAMP
     WHERE consumer = p_consumer AND commit = p_from_commit AND prepare = p_from_prepare;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'checkpoint of % is not at %/%', p_consumer, p_from_commit, p_from_prepare
            USING ERRCODE = 'SR409';
    END IF;
END
$$;
