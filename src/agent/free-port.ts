import net from 'node:net';

/**
 * A port that was free a moment ago on `host`, for a server that cannot report the one it
 * picked (QEMU's NBD server and migration listener, a simulated host's agent).
 */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
