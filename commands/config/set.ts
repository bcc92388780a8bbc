import {Args} from '@oclif/core'
import {ChunkyCommand} from '../../src/cli/base-command.js'
import {CONFIG_KEYS, checkConfigValue, configPath, isConfigKey, readConfig, writeConfig} from '../../src/cli/config-file.js'
import {UsageError} from '../../src/cli/failure.js'

export default class ConfigSet extends ChunkyCommand {
  static override summary = 'Save a setting (master, token or zone) for every client command'
  static override description = `Writes KEY to the config file (\`chunky config path\` shows where), atomically and readable by you only. Client commands use a setting from its flag first, then its environment variable (CHUNKY_MASTER, CHUNKY_TOKEN, CHUNKY_ZONE), then this file.`
  static override examples = [
    {description: 'Point every command at your cluster', command: '<%= config.bin %> <%= command.id %> master http://master.example:7400'},
    {description: 'Save the cluster credential', command: '<%= config.bin %> <%= command.id %> token "$TOKEN"'},
    {description: 'Prefer nodes in your zone when round trips are near-equal', command: '<%= config.bin %> <%= command.id %> zone eu-west'},
  ]

  static override args = {
    key: Args.string({description: 'which setting', required: true, options: [...CONFIG_KEYS]}),
    value: Args.string({description: 'its value', required: true}),
  }

  async run(): Promise<void> {
    const {args} = await this.parse(ConfigSet)
    if (!isConfigKey(args.key)) throw new UsageError(`unknown key ${args.key}: use one of ${CONFIG_KEYS.join(', ')}`)
    let value: string
    try {
      value = checkConfigValue(args.key, args.value)
    } catch (err) {
      throw new UsageError(`bad value for ${args.key}: ${(err as Error).message}`)
    }
    const dir = this.config.configDir
    await writeConfig(dir, {...(await readConfig(dir)), [args.key]: value})
    this.log(`saved ${args.key} in ${configPath(dir)}`)
  }
}
