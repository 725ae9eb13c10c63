// Progress on stderr, so that stdout stays clean for whatever a caller pipes. On a terminal one line
// is rewritten in place (at most ~10 times a second); in a log file (CI) a line is written at each
// tenth of the work, so logs stay short.

export interface ProgressSink {
  /** Starts a task of `total` steps; returns a handle to advance it. */
  start(label: string, total: number): ProgressTask;
}

export interface ProgressTask {
  tick(note?: string): void;
  done(): void;
}

export const silentProgress: ProgressSink = {
  start: () => ({ tick: () => undefined, done: () => undefined }),
};

export function stderrProgress(stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number } = process.stderr): ProgressSink {
  return {
    start(label: string, total: number): ProgressTask {
      const t0 = Date.now();
      let n = 0;
      let lastDraw = 0;
      let lastTenth = -1;
      const tty = !!stream.isTTY;
      const render = (note: string) => {
        const pct = total > 0 ? Math.floor((100 * n) / total) : 100;
        const secs = ((Date.now() - t0) / 1000).toFixed(1);
        return `[${label}] ${n}/${total} (${pct}%) ${secs}s${note ? ' ' + note : ''}`;
      };
      return {
        tick(note = '') {
          n++;
          if (tty) {
            const now = Date.now();
            if (now - lastDraw > 100 || n === total) {
              lastDraw = now;
              const text = render(note);
              const width = (stream.columns ?? 100) - 1;
              stream.write('\r' + text.slice(0, width).padEnd(Math.min(width, 100)));
            }
          } else {
            const tenth = total > 0 ? Math.floor((10 * n) / total) : 10;
            if (tenth !== lastTenth) {
              lastTenth = tenth;
              stream.write(render(note) + '\n');
            }
          }
        },
        done() {
          const secs = ((Date.now() - t0) / 1000).toFixed(1);
          const text = `[${label}] done: ${n} steps in ${secs}s`;
          stream.write(tty ? '\r' + text.padEnd(Math.min((stream.columns ?? 100) - 1, 100)) + '\n' : text + '\n');
        },
      };
    },
  };
}
