/** /api/v1/identity/ldap: the directory people may log in through. */
import { Type } from 'typebox';
import { DirectorySettings, Password } from '../identity.ts';
import { route } from '../route.ts';
import { identityErrors as errors } from './session.ts';

export const ldapRoutes = {
  show: route({
    method: 'GET',
    path: '/api/v1/identity/ldap',
    summary: 'The directory people log in through (its password is never shown)',
    tags: ['identity'],
    reply: { 200: Type.Object({ settings: Type.Union([DirectorySettings, Type.Null()]) }), ...errors },
  }),
  set: route({
    method: 'PUT',
    path: '/api/v1/identity/ldap',
    summary: 'Log people in through an LDAP directory or Active Directory',
    tags: ['identity'],
    body: Type.Object(
      { settings: DirectorySettings, bindPassword: Password },
      { additionalProperties: false },
    ),
    reply: { 200: Type.Object({ settings: DirectorySettings }), ...errors },
  }),
  remove: route({
    method: 'DELETE',
    path: '/api/v1/identity/ldap',
    summary: 'Stop logging people in through the directory',
    tags: ['identity'],
    reply: { 204: Type.Null(), ...errors },
  }),
};
