import {Args} from '@oclif/core'
import {ChunkyCommand} from '../../src/cli/base-command.js'
import {CONFIG_KEYS, readConfig, writeConfig, type ConfigFile} from '../../src/cli/config-file.js'

export default class ConfigUnset extends ChunkyCommand {
  static override summary = 'Remove a saved setting'
  static override examples = [{description: 'Forget the saved token', command: '<%= config.bin %> <%= command.id %> token'}]
  static override args = {key: Args.string({description: 'which setting', required: true, options: [...CONFIG_KEYS]})}

  async run(): Promise<void> {
    const {args} = await this.parse(ConfigUnset)
    const dir = this.config.configDir
    const config: ConfigFile = {...(await readConfig(dir))}
    delete config[args.key as keyof ConfigFile]
    await writeConfig(dir, config)
    this.log(`removed ${args.key}`)
  }
}
