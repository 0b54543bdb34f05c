"""Node side of moecluster: GPU devices and meters, workloads, the task runner, the agent.

Nothing here imports `moecluster.orchestrator`: arrows point from the head to the node.
"""
