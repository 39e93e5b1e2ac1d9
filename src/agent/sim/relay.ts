/**
 * A TCP relay: one direction of a simulated host's network cable. Cut, it drops every
 * connection and resets new ones, as a host that vanished from the network; mended, it carries
 * them again. TLS passes through untouched, so both ends still authenticate each other.
 */
import net from 'node:net';

export class Relay {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  /** Where connections go. */
  target: { host: string; port: number } | null = null;
  #open = true;

  private constructor(server: net.Server) {
    this.#server = server;
    server.on('connection', (s) => this.#connect(s));
  }

  static async start(host: string, port: number): Promise<Relay> {
    const server = net.createServer();
    const relay = new Relay(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    return relay;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  #connect(client: net.Socket): void {
    if (!this.#open || !this.target) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(this.target);
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ]) {
      this.#sockets.add(a);
      a.on('error', () => b.destroy());
      a.on('close', () => {
        this.#sockets.delete(a);
        b.destroy();
      });
      a.pipe(b);
    }
  }

  cut(): void {
    this.#open = false;
    for (const s of this.#sockets) s.resetAndDestroy();
    this.#sockets.clear();
  }

  mend(): void {
    this.#open = true;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** The URL's host and port, for a relay's target. */
export function addressOf(url: string): { host: string; port: number } {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(u.port) || (u.protocol === 'https:' ? 443 : 80) };
}
