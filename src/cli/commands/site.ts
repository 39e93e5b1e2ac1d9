/** `tern site …`: other Tern clusters this one trusts by their CA (replication targets). */
import { TernError } from '../../errors.ts';
import { siteRoutes } from '../../wire/api/sites.ts';
import type { Site } from '../../wire/site.ts';
import { deleteEach } from '../bulk.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { printList, printObject, printText } from '../output.ts';
import { type Command, viaGroup } from '../registry.ts';

const usage = `usage: tern site self | list | show NAME | remove NAME...
       tern site add NAME URL --fingerprint SHA256`;

function showSite(site: Site, flags: Flags): void {
  printObject(flags.output, site, (s) => [
    ['name', s.name],
    ['url', s.url],
    ['fingerprint', s.fingerprint],
    ['link', s.link?.state],
    ['', s.link?.message],
    ['added', s.createdAt],
  ]);
}

async function siteCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  if (sub === 'self' && args.length === 0) {
    const self = await api.call(siteRoutes.self);
    return printObject(flags.output, self, (s) => [
      ['url', s.url],
      ['fingerprint', s.fingerprint],
      ['', 'add this cluster at the other site with: tern site add NAME URL --fingerprint FINGERPRINT'],
    ]);
  }
  if ((sub === 'list' || sub === undefined) && args.length === 0) {
    const { items } = await api.call(siteRoutes.list);
    return printList(flags.output, items, ['NAME', 'URL', 'FINGERPRINT', 'ADDED'], (s) => [
      s.name,
      s.url,
      `${s.fingerprint.slice(0, 23)}…`,
      s.createdAt,
    ]);
  }
  if (sub === 'show' && args.length === 1)
    return showSite(await api.call(siteRoutes.show, { params: { site: args[0]! } }), flags);
  if (sub === 'add' && args.length === 2) {
    if (!flags.fingerprint)
      throw new TernError('invalid_request', `a site is added with the fingerprint of its CA\n${usage}`);
    const site = await api.call(siteRoutes.add, {
      body: { name: args[0]!, url: args[1]!, fingerprint: flags.fingerprint },
    });
    showSite(site, flags);
    if (flags.output !== 'json' && site.link?.state !== 'trusted')
      printText('the site is trusted here; replication to it starts once it trusts this cluster back\n');
    return;
  }
  if (sub === 'remove' && args.length > 0)
    return deleteEach(args, 'usage: tern site remove NAME...', 'site', flags.output, (site) =>
      api.call(siteRoutes.remove, { params: { site } }),
    );
  throw new TernError('invalid_request', usage);
}

const site = viaGroup(siteCommand);

export const siteCommands: Command[] = [
  {
    path: 'site self',
    summary: 'this cluster as another site adds it: URL and CA fingerprint',
    run: site,
  },
  { path: 'site list', summary: 'the sites this cluster trusts', groupDefault: true, run: site },
  { path: 'site show', args: 'NAME', summary: 'one site, its link checked now', run: site },
  {
    path: 'site add',
    args: 'NAME URL',
    summary: 'trust another Tern cluster by its CA fingerprint',
    details:
      "URL is the other cluster's cluster endpoint and --fingerprint its CA's SHA-256, both as `tern site self` prints them there. The CA is fetched and checked against the fingerprint; afterwards the managers talk over mutual TLS, each with a certificate of its own CA. Each side adds the other.",
    flags: ['fingerprint'],
    run: site,
  },
  { path: 'site remove', args: 'NAME...', summary: 'stop trusting sites', run: site },
];
