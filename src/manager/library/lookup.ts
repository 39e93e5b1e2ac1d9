/**
 * Finding library items by the name a user gave, with the way forward when the name is of
 * another kind of item (an image named where a template was expected, an ISO as a disk).
 */
import { TernError } from '../../errors.ts';
import type { Image, ImageKind } from '../../wire/image.ts';
import type { Template } from '../../wire/template.ts';
import { type ClusterSnapshot, existingPool } from '../cluster/inventory.ts';
import type { ImageStore } from './images.ts';
import type { TemplateStore } from './templates.ts';

/** The template `name`; an unknown one that is an image says how to use the image instead. */
export async function templateNamed(
  stores: { templates: TemplateStore; images: ImageStore },
  name: string,
): Promise<Template> {
  if (await stores.templates.has(name)) return stores.templates.get(name);
  if (await stores.images.has(name)) {
    const image = await stores.images.get(name);
    const how =
      image.kind === 'iso'
        ? `install from it with \`tern vm create NAME --iso ${name} --disk SIZE\``
        : `make a VM from it with \`tern vm create NAME --image ${name}\`, or a template with \`tern template create ${name} --from-image ${name}\``;
    throw new TernError(
      'not_found',
      `template ${name} does not exist, but an image of that name does: ${how}`,
      {
        image: name,
      },
    );
  }
  throw new TernError('not_found', `template ${name} does not exist`);
}

/** The library image `name`, which must be of `kind`. */
export async function imageNamed(images: ImageStore, name: string, kind: ImageKind): Promise<Image> {
  const image = await images.get(name);
  if (image.kind !== kind) {
    throw new TernError(
      'invalid_request',
      kind === 'iso'
        ? `image ${name} is a disk image, not an ISO: make the VM from it with --image ${name}`
        : `image ${name} is an ISO: it goes in a CD-ROM (--iso ${name}), it is no disk to clone`,
      { image: name },
    );
  }
  if (!image.host) throw new TernError('conflict', `image ${name} has no host that holds it`);
  return image;
}

/**
 * The pools placement must find for the library images a VM reads (the image its disk is a
 * clone of, the ISO in its drive): the image's shared pool, or its host's own.
 */
export async function imagePools(
  images: ImageStore,
  snapshot: ClusterSnapshot,
  items: (Image | null)[],
): Promise<string[]> {
  const pools: string[] = [];
  for (const image of items) {
    if (!image) continue;
    const row = await images.row(image.name);
    pools.push(existingPool(snapshot, row.hostId!, image.volume));
  }
  return pools;
}
