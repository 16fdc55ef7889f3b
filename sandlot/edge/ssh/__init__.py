"""The SSH gateway: `ssh SANDBOX_ID@host -p 2222` into a sandbox, through its agent.

Nothing runs on the host: shells, commands, the sftp server and forwarded connections
are all processes or sockets inside the sandbox, relayed over the agent connection.
"""

from sandlot.edge.ssh.gateway import SshGateway

__all__ = ["SshGateway"]
