/**
 * A log panel that follows its tail: a fixed-height box (style.css: .log) that scrolls by itself to
 * show each line added, as `tail -f` does, while its reader is at the bottom. A reader who scrolled up
 * to read is left where they are; once they scroll back to the bottom it follows again. Whether to
 * follow is decided as each line comes, from where the box is scrolled just then, so there is no state
 * to get out of step with the reader's scrolling.
 */

/** How close to the bottom, in pixels, still counts as at the bottom (zoom makes scrollTop fractional). */
const SLACK_PX = 8;

const atBottom = (box: HTMLElement) => box.scrollHeight - box.scrollTop - box.clientHeight <= SLACK_PX;

/** Appends `lines` to `box`, keeping the newest in view when the reader was at the bottom. */
export function appendFollowing(box: HTMLElement, ...lines: Node[]): void {
  const follow = atBottom(box);
  box.append(...lines);
  if (follow) box.scrollTop = box.scrollHeight;
}
