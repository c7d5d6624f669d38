// A push-based async iterable: producers push items, end or fail it; one consumer iterates.
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiting: { resolve: (r: IteratorResult<T>) => void; reject: (err: unknown) => void } | undefined;
  private done = false;
  private failure: { err: Error } | undefined;

  push(item: T): void {
    if (this.done) return;
    const w = this.waiting;
    if (w !== undefined) {
      this.waiting = undefined;
      w.resolve({ value: item, done: false });
    } else {
      this.items.push(item);
    }
  }

  /** Ends iteration after the buffered items, or at once (dropping them) with `discard`. */
  end(discard = false): void {
    if (discard) this.items.length = 0;
    if (this.done) return;
    this.done = true;
    this.settleWaiting();
  }

  /** Fails iteration after the buffered items. */
  fail(err: unknown): void {
    if (this.done) return;
    this.done = true;
    this.failure = { err: err instanceof Error ? err : new Error(String(err)) };
    this.settleWaiting();
  }

  get closed(): boolean {
    return this.done;
  }

  private settleWaiting(): void {
    const w = this.waiting;
    if (w === undefined) return;
    this.waiting = undefined;
    if (this.failure !== undefined) w.reject(this.failure.err);
    else w.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        const item = this.items.shift();
        if (item !== undefined) return Promise.resolve({ value: item, done: false });
        if (this.done) {
          return this.failure !== undefined
            ? Promise.reject(this.failure.err)
            : Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          this.waiting = { resolve, reject };
        });
      },
      return: () => {
        this.end(true);
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
