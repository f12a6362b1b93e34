"""The one-time adaptation phase, and the backbone it leaves behind.

A LoRA is trained on auxiliary tools a user will never learn, merged into the backbone and
frozen; banks learned afterwards carry it. The rooms, in the order the phase runs:

* `corpus`: the auxiliary tools and requests (synthetic ones drawn from the word tables of
  `words`, and NESTFUL's, read by `nestful`);
* `adapt`: the phase itself (`adapt_backbone`, `AdaptConfig`, `AdaptReport`);
* `lora`: the LoRA trainer, shared with the LoRA baselines of `agentmem.eval`;
* `adapter`: the LoRA on disk (`Adapter`) and the adaptations shipped with agentmem;
* `resolve`: an adapter merged into a backbone, and `resolve_backbone`, the one answer to
  "this backbone with this adapter".

Nothing is imported here, so that `agentmem.backbone` can name an `Adapter` without
loading the phase.
"""
