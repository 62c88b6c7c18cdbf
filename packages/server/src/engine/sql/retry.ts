/** The retry rule, as SQL shared by every statement that sends a failed attempt back to the queue. */

/** The most a retry waits, whatever the backoff: one day. */
const MAX_RETRY_DELAY_MS = 86_400_000;

/**
 * The pause before the next attempt of task row `t`, in ms: retry_delay_ms, doubled per failed attempt
 * for exponential backoff, capped at a day.
 */
export const retryDelayMsSql = (t: string) => `
  case when ${t}.retry_backoff = 'exponential'
       then least(${t}.retry_delay_ms * power(2, ${t}.attempts - 1), ${MAX_RETRY_DELAY_MS})::int8
       else ${t}.retry_delay_ms end`;
