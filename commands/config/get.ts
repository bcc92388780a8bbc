import {Args} from '@oclif/core'
import {ChunkyCommand} from '../../src/cli/base-command.js'
import {CONFIG_KEYS, readConfig, type ConfigFile} from '../../src/cli/config-file.js'

export default class ConfigGet extends ChunkyCommand {
  static override summary = 'Show the saved settings (or one of them)'
  static override description = 'Prints what the config file holds; the token is shown only when asked for by name. Flags and environment variables, which come first, are not shown.'
  static override examples = [
    {description: 'Every saved setting', command: '<%= config.bin %> <%= command.id %>'},
    {description: 'One setting (prints nothing and exits 1 if unset)', command: '<%= config.bin %> <%= command.id %> master'},
  ]

  static override enableJsonFlag = true
  static override args = {key: Args.string({description: 'which setting', required: false, options: [...CONFIG_KEYS]})}

  async run(): Promise<ConfigFile> {
    const {args} = await this.parse(ConfigGet)
    const config = await readConfig(this.config.configDir)
    if (args.key) {
      const value = config[args.key as keyof ConfigFile]
      if (!this.jsonEnabled()) {
        if (value === undefined) this.exit(1)
        this.log(value)
      }
      return value === undefined ? {} : {[args.key]: value}
    }
    if (!this.jsonEnabled()) {
      for (const key of CONFIG_KEYS) {
        const value = config[key]
        if (value !== undefined) this.log(`${key} = ${key === 'token' ? '(set; `chunky config get token` shows it)' : value}`)
      }
    }
    return config
  }
}
