/**
 * /api/v1/images: disk images and ISOs in the library. Imported from a path on the host or
 * uploaded (streamed through to the host, never held here), then checked and converted by a
 * task on the host; verified against their recorded SHA-256 by a task, and downloaded back
 * (streamed from the host, never held here either).
 */
import { Type } from 'typebox';
import { ErrorBody, Name } from '../common.ts';
import { CreateImageRequest, Image, Sha256, UploadImageQuery } from '../image.ts';
import { route } from '../route.ts';
import { TaskAccepted } from '../task.ts';

const NameParams = Type.Object({ name: Name });

export const imageRoutes = {
  list: route({
    method: 'GET',
    path: '/api/v1/images',
    summary: 'List disk images and ISOs',
    tags: ['library'],
    reply: { 200: Type.Object({ items: Type.Array(Image) }) },
  }),
  show: route({
    method: 'GET',
    path: '/api/v1/images/:name',
    summary: 'Show an image',
    tags: ['library'],
    params: NameParams,
    reply: { 200: Image, 400: ErrorBody, 404: ErrorBody },
  }),
  import: route({
    method: 'POST',
    path: '/api/v1/images',
    summary:
      'Import a disk image (raw, qcow2, VMDK, VHD, VHDX; stored as qcow2) or an ISO from a path on the host',
    tags: ['library'],
    body: CreateImageRequest,
    reply: { 202: TaskAccepted, 400: ErrorBody, 409: ErrorBody },
  }),
  upload: route({
    method: 'PUT',
    path: '/api/v1/images/:name',
    summary: 'Upload a disk image or ISO (application/octet-stream with a Content-Length), then import it',
    tags: ['library'],
    params: NameParams,
    query: UploadImageQuery,
    reply: {
      202: Type.Object({ task: TaskAccepted.properties.task, bytes: Type.Integer(), sha256: Sha256 }),
      400: ErrorBody,
      409: ErrorBody,
      413: ErrorBody,
      415: ErrorBody,
    },
    rawBody: {
      contentType: 'application/octet-stream',
      description: 'the image file, streamed as it is (raw, qcow2, VMDK, VHD, VHDX or ISO)',
    },
  }),
  content: route({
    method: 'GET',
    path: '/api/v1/images/:name/content',
    summary: 'Download an image: its stored file as it is (qcow2 or ISO), streamed from its host',
    tags: ['library'],
    params: NameParams,
    reply: { 400: ErrorBody, 404: ErrorBody, 503: ErrorBody },
    rawReply: {
      contentType: 'application/octet-stream',
      description:
        "the stored file (qcow2 or ISO) as it is, with its Content-Length; its SHA-256 is the image's sha256",
    },
  }),
  verify: route({
    method: 'POST',
    path: '/api/v1/images/:name/verify',
    summary:
      'Check an image: re-hash its stored file on its host against the SHA-256 recorded at import (the task fails on a mismatch, changing nothing)',
    tags: ['library'],
    params: NameParams,
    reply: { 202: TaskAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
  }),
  remove: route({
    method: 'DELETE',
    path: '/api/v1/images/:name',
    summary: 'Delete an image and its volume',
    tags: ['library'],
    params: NameParams,
    reply: { 202: TaskAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
  }),
};
