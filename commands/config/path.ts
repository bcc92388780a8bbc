import {ChunkyCommand} from '../../src/cli/base-command.js'
import {configPath} from '../../src/cli/config-file.js'

export default class ConfigPath extends ChunkyCommand {
  static override summary = 'Print where the config file is'
  static override description = 'The file lives in your config directory: $XDG_CONFIG_HOME/chunky, else ~/.config/chunky; CHUNKY_CONFIG_DIR overrides it.'
  static override examples = [{description: 'Where is it?', command: '<%= config.bin %> <%= command.id %>'}]

  async run(): Promise<void> {
    await this.parse(ConfigPath)
    this.log(configPath(this.config.configDir))
  }
}
