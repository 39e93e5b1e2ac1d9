/** What the VM tasks need from the rest of the manager. */
import type { EventBus } from '../events/bus.ts';
import type { HostRegistry } from '../hosts/registry.ts';
import type { TemplateStore } from '../library/templates.ts';
import type { VmStore } from './store.ts';

export interface VmDeps {
  store: VmStore;
  hosts: HostRegistry;
  templates: TemplateStore;
  bus: EventBus;
}
