/** Wire objects of identity and access: users, groups, sessions, tokens, projects, audit. */
import { type Static, Type } from 'typebox';
import { Name, Timestamp, Uuid } from './common.ts';
import { permissions, roles } from './permissions.ts';

export const Role = Type.Enum(roles, { description: 'admin, operator, auditor, or user (self-service)' });
export const Permission = Type.Enum(permissions);

/** User names: what people type to log in, also directory (uid / sAMAccountName) names. */
export const UserName = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: '^[a-zA-Z0-9][a-zA-Z0-9._@-]*$',
  description: 'letters, digits, dot, underscore, @ and hyphen',
});
export const Password = Type.String({ minLength: 1, maxLength: 1024 });

export const User = Type.Object({
  id: Uuid,
  name: UserName,
  displayName: Type.Union([Type.String(), Type.Null()]),
  source: Type.Union([Type.Literal('local'), Type.Literal('ldap')]),
  role: Type.Union([Role, Type.Null()], { description: 'given directly, besides its groups' }),
  groups: Type.Array(Name),
  roles: Type.Array(Role, { description: 'every role it holds, directly or through groups' }),
  disabled: Type.Boolean(),
  createdAt: Timestamp,
  lastLoginAt: Type.Union([Timestamp, Type.Null()]),
});
export type User = Static<typeof User>;

export const CreateUserRequest = Type.Object(
  {
    name: UserName,
    displayName: Type.Optional(Type.String({ maxLength: 200 })),
    password: Type.Optional(Password),
    role: Type.Optional(Role),
    groups: Type.Optional(Type.Array(Name, { maxItems: 100 })),
  },
  { additionalProperties: false },
);

export const UpdateUserRequest = Type.Object(
  {
    displayName: Type.Optional(Type.String({ maxLength: 200 })),
    password: Type.Optional(Password),
    role: Type.Optional(Type.Union([Type.Null(), Role])),
    disabled: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const Group = Type.Object({
  name: Name,
  role: Role,
  ldapGroup: Type.Union([Type.String(), Type.Null()]),
  members: Type.Array(UserName),
  createdAt: Timestamp,
});
export type Group = Static<typeof Group>;

export const CreateGroupRequest = Type.Object(
  {
    name: Name,
    role: Role,
    ldapGroup: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 1024,
        description: 'directory group DN or cn mapped onto this group',
      }),
    ),
  },
  { additionalProperties: false },
);

export const Whoami = Type.Object({
  user: UserName,
  userId: Type.Union([Uuid, Type.Null()]),
  roles: Type.Array(Role),
  permissions: Type.Array(Permission),
  via: Type.Union([Type.Literal('token'), Type.Literal('session')]),
  tokenId: Type.Union([Uuid, Type.Null()], { description: 'the API token in use, if any' }),
  expiresAt: Type.Union([Timestamp, Type.Null()]),
});
export type Whoami = Static<typeof Whoami>;

export const LoginRequest = Type.Object(
  { user: UserName, password: Password },
  { additionalProperties: false },
);

export const ApiToken = Type.Object({
  id: Uuid,
  name: Type.String(),
  user: Type.Union([UserName, Type.Null()]),
  scopes: Type.Union([Type.Array(Permission), Type.Null()], {
    description: 'null: all of its user’s rights',
  }),
  createdAt: Timestamp,
  expiresAt: Type.Union([Timestamp, Type.Null()]),
  lastUsedAt: Type.Union([Timestamp, Type.Null()]),
  revokedAt: Type.Union([Timestamp, Type.Null()]),
});
export type ApiToken = Static<typeof ApiToken>;

export const CreateTokenRequest = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    expiresInDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650, default: 90 })),
    scopes: Type.Optional(Type.Array(Permission, { minItems: 1, maxItems: 64 })),
    user: Type.Optional(UserName),
  },
  { additionalProperties: false },
);

// Null first: the validator coerces types, and would read null as 0 (a limit of nothing)
// if it tried the integer first.
const Limit = Type.Union([Type.Null(), Type.Integer({ minimum: 0 })], { description: 'null: no limit' });
export const Quota = Type.Object({ vms: Limit, vcpus: Limit, memoryMiB: Limit, diskBytes: Limit });
export type Quota = Static<typeof Quota>;

export const Usage = Type.Object({
  vms: Type.Integer(),
  vcpus: Type.Integer(),
  memoryMiB: Type.Integer(),
  diskBytes: Type.Integer(),
});
export type Usage = Static<typeof Usage>;

export const ProjectMember = Type.Object({
  kind: Type.Union([Type.Literal('user'), Type.Literal('group')]),
  name: Type.String(),
});

export const Project = Type.Object({
  name: Name,
  description: Type.String(),
  quota: Quota,
  usage: Usage,
  members: Type.Array(ProjectMember),
  createdAt: Timestamp,
});
export type Project = Static<typeof Project>;

export const CreateProjectRequest = Type.Object(
  {
    name: Name,
    description: Type.Optional(Type.String({ maxLength: 1000 })),
    quota: Type.Optional(Type.Partial(Quota, { additionalProperties: false })),
  },
  { additionalProperties: false },
);

export const UpdateProjectRequest = Type.Object(
  {
    description: Type.Optional(Type.String({ maxLength: 1000 })),
    quota: Type.Optional(Type.Partial(Quota, { additionalProperties: false })),
  },
  { additionalProperties: false },
);

export const AuditRecord = Type.Object({
  seq: Type.Integer(),
  at: Timestamp,
  actor: Type.String(),
  via: Type.String(),
  action: Type.String(),
  object: Type.String(),
  sourceIp: Type.Union([Type.String(), Type.Null()]),
  result: Type.Union([Type.Literal('ok'), Type.Literal('denied'), Type.Literal('failed')]),
  status: Type.Union([Type.Integer(), Type.Null()]),
  detail: Type.Union([Type.String(), Type.Null()]),
});
export type AuditRecord = Static<typeof AuditRecord>;

export const DirectorySettings = Type.Object(
  {
    url: Type.String({ pattern: '^ldaps?://', maxLength: 500 }),
    bindDn: Type.String({ minLength: 1, maxLength: 1024 }),
    userBase: Type.String({ minLength: 1, maxLength: 1024 }),
    userFilter: Type.String({
      minLength: 1,
      maxLength: 1024,
      description: '{user} stands for the escaped name: (uid={user}), AD (sAMAccountName={user})',
    }),
    groupBase: Type.Optional(Type.String({ maxLength: 1024 })),
    groupFilter: Type.Optional(Type.String({ maxLength: 1024, description: '{dn}: the user’s DN' })),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 60_000 })),
  },
  { additionalProperties: false },
);
export type DirectorySettings = Static<typeof DirectorySettings>;
