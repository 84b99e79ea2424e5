"""The local AWS runtime: the stack `template.yaml` declares, built in moto, with its functions run in-process.

- `template`: reads the SAM template (functions, queues, event sources, conditions);
- `resources`, `intrinsics`: create its resources in moto and resolve `!Ref`, `!GetAtt`, `!Sub`, `Fn::If`;
- `functions`, `lambda_model`: a function's handler, environment, context and execution environments;
- `poller`: an SQS event source mapping with Lambda's semantics;
- `runtime`: `local_stack()` and `LocalStack.drain()`, which run the SQS triggers (concurrently, like Lambda)
  and asynchronous invocations until the pipeline is idle.
"""
